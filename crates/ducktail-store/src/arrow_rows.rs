//! Rows handed to DuckDB's appender a column at a time, as one Arrow batch.
//!
//! The row appender crosses into DuckDB once per value (23 calls for a part); an Arrow batch is
//! converted a column at a time, 2,048 rows per chunk. This module only converts: the caller
//! chooses the rows and the column order, which must be the table's.

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};

/// An Arrow batch being built column by column over `rows`.
pub(crate) struct ArrowRows<'r, R> {
    rows: &'r [R],
    fields: Vec<Field>,
    columns: Vec<ArrayRef>,
}

impl<'r, R> ArrowRows<'r, R> {
    pub(crate) fn new(rows: &'r [R]) -> Self {
        ArrowRows { rows, fields: Vec::new(), columns: Vec::new() }
    }

    fn column(mut self, name: &'static str, data_type: DataType, array: ArrayRef) -> Self {
        self.fields.push(Field::new(name, data_type, true));
        self.columns.push(array);
        self
    }

    /// A column of `data_type` collected into the Arrow array `A`, one `pick` per row.
    fn collected<T, A>(self, name: &'static str, data_type: DataType, pick: impl Fn(&'r R) -> Option<T>) -> Self
    where
        A: arrow_array::Array + FromIterator<Option<T>> + 'static,
    {
        let array: A = self.rows.iter().map(pick).collect();
        self.column(name, data_type, Arc::new(array))
    }

    /// A `VARCHAR` column.
    pub(crate) fn text(self, name: &'static str, pick: impl Fn(&'r R) -> Option<&'r str>) -> Self {
        self.collected::<_, StringArray>(name, DataType::Utf8, pick)
    }

    /// A `BIGINT` column.
    pub(crate) fn int64(self, name: &'static str, pick: impl Fn(&'r R) -> Option<i64>) -> Self {
        self.collected::<_, Int64Array>(name, DataType::Int64, pick)
    }

    /// An `INTEGER` column.
    pub(crate) fn int32(self, name: &'static str, pick: impl Fn(&'r R) -> Option<i32>) -> Self {
        self.collected::<_, Int32Array>(name, DataType::Int32, pick)
    }

    /// A `DOUBLE` column.
    pub(crate) fn float64(self, name: &'static str, pick: impl Fn(&'r R) -> Option<f64>) -> Self {
        self.collected::<_, Float64Array>(name, DataType::Float64, pick)
    }

    /// A `BOOLEAN` column.
    pub(crate) fn boolean(self, name: &'static str, pick: impl Fn(&'r R) -> Option<bool>) -> Self {
        self.collected::<_, BooleanArray>(name, DataType::Boolean, pick)
    }

    /// A `TIMESTAMPTZ` column from Unix microseconds.
    pub(crate) fn timestamp_us(self, name: &'static str, pick: impl Fn(&'r R) -> Option<i64>) -> Self {
        let array = self.rows.iter().map(pick).collect::<TimestampMicrosecondArray>().with_timezone("UTC");
        self.column(name, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), Arc::new(array))
    }

    /// A `TIMESTAMPTZ` column from Unix milliseconds (how records carry their times).
    pub(crate) fn timestamp_ms(self, name: &'static str, pick: impl Fn(&'r R) -> Option<i64>) -> Self {
        self.timestamp_us(name, move |row| pick(row).map(|ms| ms.saturating_mul(1_000)))
    }

    pub(crate) fn finish(self) -> RecordBatch {
        RecordBatch::try_new(Arc::new(Schema::new(self.fields)), self.columns).expect("every column has one value per row")
    }
}

/// The rows of a batch [`ArrowRows`] built, as DuckDB values (what a query of the table
/// returns), for code that works on rows rather than columns.
pub(crate) fn values_by_row(batch: &RecordBatch) -> Vec<Vec<duckdb::types::Value>> {
    use arrow_array::Array as _;
    use duckdb::types::{TimeUnit as DuckUnit, Value};
    let mut rows: Vec<Vec<Value>> = (0..batch.num_rows()).map(|_| Vec::with_capacity(batch.num_columns())).collect();
    for column in batch.columns() {
        let any = column.as_any();
        let value = |row: usize| -> Value {
            if column.is_null(row) {
                return Value::Null;
            }
            if let Some(array) = any.downcast_ref::<StringArray>() {
                Value::Text(array.value(row).to_owned())
            } else if let Some(array) = any.downcast_ref::<Int64Array>() {
                Value::BigInt(array.value(row))
            } else if let Some(array) = any.downcast_ref::<Int32Array>() {
                Value::Int(array.value(row))
            } else if let Some(array) = any.downcast_ref::<Float64Array>() {
                Value::Double(array.value(row))
            } else if let Some(array) = any.downcast_ref::<BooleanArray>() {
                Value::Boolean(array.value(row))
            } else if let Some(array) = any.downcast_ref::<TimestampMicrosecondArray>() {
                Value::Timestamp(DuckUnit::Microsecond, array.value(row))
            } else {
                unreachable!("ArrowRows builds no column of type {}", column.data_type())
            }
        };
        for (row, values) in rows.iter_mut().enumerate() {
            values.push(value(row));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_column_holds_one_value_per_row_with_its_nulls() {
        let rows = [("a", Some(1_i64)), ("b", None)];
        let batch = ArrowRows::new(&rows)
            .text("name", |row| Some(row.0))
            .int64("n", |row| row.1)
            .timestamp_ms("at", |row| row.1)
            .boolean("flag", |row| row.1.map(|n| n > 0))
            .finish();
        assert_eq!((batch.num_rows(), batch.num_columns()), (2, 4));
        assert_eq!(batch.column(1).null_count(), 1);
        let at = batch.column(2).as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap();
        assert_eq!(at.value(0), 1_000);
    }

    #[test]
    fn rows_read_back_as_the_values_a_query_returns() {
        use duckdb::types::{TimeUnit as DuckUnit, Value};
        let rows = [("a", Some(2_i64)), ("b", None)];
        let batch = ArrowRows::new(&rows)
            .text("name", |row| Some(row.0))
            .int64("n", |row| row.1)
            .int32("small", |row| row.1.map(|n| n as i32))
            .float64("x", |row| row.1.map(|n| n as f64 / 4.0))
            .boolean("flag", |row| row.1.map(|n| n > 0))
            .timestamp_ms("at", |row| row.1)
            .finish();
        let values = values_by_row(&batch);
        assert_eq!(
            values[0],
            vec![
                Value::Text("a".into()),
                Value::BigInt(2),
                Value::Int(2),
                Value::Double(0.5),
                Value::Boolean(true),
                Value::Timestamp(DuckUnit::Microsecond, 2_000)
            ]
        );
        assert_eq!(values[1], vec![Value::Text("b".into()), Value::Null, Value::Null, Value::Null, Value::Null, Value::Null]);
    }
}
