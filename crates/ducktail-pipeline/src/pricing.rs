//! List prices applied to stored rows: the periodic pass that gives finish steps their
//! `list_cost` (and a computed `cost` where none was logged), shared by `ducktail index` and the
//! running daemon. The price table itself is `ducktail_sources::pricing`; the SQL is the store's
//! (`Store::apply_list_prices`).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use ducktail_sources::pricing::PriceTable;

/// Gives stored finish steps their list-price cost from `prices` (see `ducktail_store`'s
/// `apply_list_prices`): those still without one, or every one when the table changed since it
/// last priced them.
pub fn price_stored_rows(store: &mut ducktail_store::Store, prices: &PriceTable) -> Result<ducktail_store::ListPricing, ducktail_store::StoreError> {
    let fingerprint = prices.fingerprint().to_string();
    let reader = store.reader()?;
    let stored = reader.list_prices_fingerprint()?;
    let all = stored.as_ref().is_some_and(|stored| *stored != fingerprint);
    let models = reader.models_to_price(all)?;
    drop(reader);
    let list: Vec<ducktail_model::ListPrice> = models.iter().filter_map(|model| prices.list_price(model)).collect();
    if list.is_empty() && stored.as_deref() == Some(fingerprint.as_str()) {
        return Ok(ducktail_store::ListPricing::default());
    }
    store.apply_list_prices(&list, all, &fingerprint)
}

/// Anyone → Writer, tell. Give stored rows their list-price cost (see [`price_stored_rows`]).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct PriceStoredRows {
    /// The price table in force.
    pub prices: Arc<PriceTable>,
}

/// How often a running daemon prices the rows committed since the last pass: OpenCode rows
/// arrive without a list cost, and pricing them in the commit path would slow every batch.
pub const PRICING_INTERVAL: Duration = Duration::from_secs(10);
