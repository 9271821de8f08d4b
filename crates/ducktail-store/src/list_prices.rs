//! List-price cost of stored rows: `list_cost` for every model the price table knows, and `cost`
//! of the rows whose cost is computed (`cost_source = 'computed'`) or was never logged (which
//! become computed), from the tokens already stored — so a new price table re-prices history
//! without reading any file again. A logged cost (OpenCode's, 0 for a subscription) is kept.

use duckdb::params;
use ducktail_model::{ListPrice, ListRates};

use crate::{Reader, Result, Store};

/// `pipeline_state` key of the fingerprint of the price table that priced the rows.
const LIST_PRICES_KEY: &str = "list_prices";

/// What one pricing pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListPricing {
    /// Every row was priced again (the price table changed since the last pass).
    pub repriced_all: bool,
    /// Finish steps given a list cost.
    pub steps: usize,
    /// Sessions with a step whose `cost` changed (computed again, or computed for the first
    /// time): their derived rollups are stale.
    pub changed_sessions: std::collections::BTreeSet<String>,
}

/// `tokens × rates` over `step_events` columns, with the long-context rates above the threshold.
fn cost_sql() -> &'static str {
    "CASE WHEN $9::BIGINT IS NOT NULL AND coalesce(tokens_input, 0) + coalesce(tokens_cache_read, 0) + coalesce(tokens_cache_write, 0) > $9::BIGINT
          THEN coalesce(tokens_input, 0) * $5 + coalesce(tokens_output, 0) * $6 + coalesce(tokens_cache_read, 0) * $7 + coalesce(tokens_cache_write, 0) * $8
          ELSE coalesce(tokens_input, 0) * $1 + coalesce(tokens_output, 0) * $2 + coalesce(tokens_cache_read, 0) * $3 + coalesce(tokens_cache_write, 0) * $4 END"
}

impl Reader {
    /// The models of finish steps still without a list cost (all models when `all`).
    pub fn models_to_price(&self, all: bool) -> Result<Vec<String>> {
        let context = "finding models to price";
        let sql = "SELECT DISTINCT m.model_id FROM step_events e JOIN messages m ON m.id = e.message_id AND m.session_id = e.session_id
                   WHERE e.event_type = 'finish' AND m.model_id IS NOT NULL AND (e.list_cost IS NULL OR $1::BOOLEAN) ORDER BY 1";
        let mut statement = self.connection.prepare(sql).map_err(|source| self.query_error(context, source))?;
        statement
            .query_map([all], |row| row.get::<_, String>(0))
            .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
            .map_err(|source| self.query_error(context, source))
    }

    /// The fingerprint of the price table that priced the stored rows, if any did.
    pub fn list_prices_fingerprint(&self) -> Result<Option<String>> {
        let context = "reading the price table's fingerprint";
        let mut statement = self.connection.prepare("SELECT value FROM pipeline_state WHERE key = $1").map_err(|source| self.query_error(context, source))?;
        let mut rows = statement.query_map([LIST_PRICES_KEY], |row| row.get::<_, Option<String>>(0)).map_err(|source| self.query_error(context, source))?;
        Ok(rows.next().transpose().map_err(|source| self.query_error(context, source))?.flatten())
    }
}

impl Store {
    /// Prices the finish steps of `prices`' models that have no list cost yet, or all of them
    /// when `all` (a new price table), in one transaction; computed costs follow their list
    /// cost, and each message's list cost is the sum of its steps'. Records `fingerprint` as the
    /// table that priced the rows.
    pub fn apply_list_prices(&mut self, prices: &[ListPrice], all: bool, fingerprint: &str) -> Result<ListPricing> {
        self.connection.execute_batch("BEGIN TRANSACTION").map_err(|source| self.query_error("beginning a pricing pass", source))?;
        // It may change the cost columns of transcript rows the transcript writer remembers.
        self.forget_remembered_rows();
        // Costs it computes change rollups, as any batch's records do: the derived-complete mark
        // goes with the same commit, so a crash before the rollups follow recomputes them.
        match self.clear_derived_mark_in_transaction().and_then(|()| self.apply_list_prices_in_transaction(prices, all, fingerprint)) {
            Ok(pricing) => {
                if let Err(source) = self.connection.execute_batch("COMMIT") {
                    let _ = self.connection.execute_batch("ROLLBACK");
                    return Err(self.query_error("committing a pricing pass", source));
                }
                self.derived_mark_to_clear = false;
                Ok(pricing)
            }
            Err(error) => {
                let _ = self.connection.execute_batch("ROLLBACK");
                Err(error)
            }
        }
    }

    fn apply_list_prices_in_transaction(&mut self, prices: &[ListPrice], all: bool, fingerprint: &str) -> Result<ListPricing> {
        let fail = |context: &'static str| {
            let path = self.path.clone();
            move |source| crate::StoreError::Query { path, context, error: source }
        };
        let mut pricing = ListPricing { repriced_all: all, ..ListPricing::default() };
        // The messages whose list cost may change in this pass: those without one (a rewritten
        // message row arrives without it) and those of the steps about to be priced.
        self.connection
            .execute_batch("CREATE TEMP TABLE IF NOT EXISTS stage_priced_messages (message_id VARCHAR); DELETE FROM temp.stage_priced_messages;")
            .map_err(fail("staging the messages to price"))?;
        self.connection
            .execute(
                "INSERT INTO temp.stage_priced_messages
                 SELECT message_id FROM step_events WHERE event_type = 'finish' AND (list_cost IS NULL OR $1::BOOLEAN)
                 UNION SELECT id FROM messages WHERE list_cost IS NULL",
                [all],
            )
            .map_err(fail("staging the messages to price"))?;
        let steps_sql = format!(
            "UPDATE step_events SET list_cost = {cost},
                 cost = CASE WHEN cost_source = 'computed' OR cost IS NULL THEN {cost} ELSE cost END,
                 cost_source = CASE WHEN cost_source = 'computed' OR cost IS NULL THEN 'computed' ELSE cost_source END
             WHERE event_type = 'finish' AND (list_cost IS NULL OR $11::BOOLEAN)
               AND message_id IN (SELECT id FROM messages WHERE model_id = $10::VARCHAR)",
            cost = cost_sql()
        );
        let changed_sql = format!(
            "SELECT DISTINCT session_id FROM step_events
             WHERE event_type = 'finish' AND (cost_source = 'computed' OR cost IS NULL) AND cost IS DISTINCT FROM {cost}
               AND (list_cost IS NULL OR $11::BOOLEAN)
               AND message_id IN (SELECT id FROM messages WHERE model_id = $10::VARCHAR)",
            cost = cost_sql()
        );
        for price in prices {
            let (standard, long): (&ListRates, &ListRates) = (&price.standard, &price.long);
            let rates = params![
                standard.input,
                standard.output,
                standard.cache_read,
                standard.cache_write,
                long.input,
                long.output,
                long.cache_read,
                long.cache_write,
                price.long_above,
                price.model_id,
                all,
            ];
            let mut statement = self.connection.prepare_cached(&changed_sql).map_err(fail("comparing computed costs"))?;
            let sessions = statement
                .query_map(rates, |row| row.get::<_, String>(0))
                .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
                .map_err(fail("comparing computed costs"))?;
            pricing.changed_sessions.extend(sessions);
            let mut statement = self.connection.prepare_cached(&steps_sql).map_err(fail("pricing steps"))?;
            pricing.steps += statement.execute(rates).map_err(fail("pricing steps"))?;
        }
        {
            // Summed in step order: a float sum depends on its order, and a message priced live
            // must equal the one a fresh index prices.
            self.connection
                .execute(
                    "UPDATE messages SET list_cost = s.list_cost,
                         cost = CASE WHEN messages.cost_source = 'computed' OR messages.cost IS NULL THEN s.list_cost ELSE messages.cost END,
                         cost_source = CASE WHEN messages.cost_source = 'computed' OR messages.cost IS NULL THEN 'computed' ELSE messages.cost_source END
                     FROM (SELECT session_id, message_id, sum(list_cost ORDER BY id) AS list_cost FROM step_events
                           WHERE event_type = 'finish' AND list_cost IS NOT NULL
                             AND message_id IN (SELECT message_id FROM temp.stage_priced_messages)
                           GROUP BY ALL) s
                     WHERE messages.id = s.message_id AND messages.session_id = s.session_id
                       AND (messages.list_cost IS DISTINCT FROM s.list_cost)",
                    [],
                )
                .map_err(fail("pricing messages"))?;
        }
        self.connection
            .execute("INSERT OR REPLACE INTO pipeline_state VALUES ($1, $2)", params![LIST_PRICES_KEY, fingerprint])
            .map_err(fail("recording the price table's fingerprint"))?;
        Ok(pricing)
    }
}
