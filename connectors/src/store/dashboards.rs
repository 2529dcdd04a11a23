//! Saved console dashboards: a title and named panels, each a dashboard spec, kept as one JSON
//! text per (tenant, id).
//!
//! Stored like a report's definition: the body is opaque to the store (the API checks it against
//! the semantic model before it is saved), and every call is scoped by tenant, so two tenants may
//! use the same id and neither sees, replaces nor deletes the other's.

use super::StoreResult;

/// A saved console dashboard: named panels, each a dashboard spec (JSON kept as text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDashboard {
    /// Owning tenant.
    pub tenant: String,
    /// Dashboard id, unique per tenant.
    pub id: String,
    /// Its title, for people.
    pub title: String,
    /// Its panels as JSON text, opaque to the store.
    pub body: String,
    /// Last change, milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
}

/// Saved dashboards. Every method that writes is one transaction, durable when it returns.
pub trait Dashboards: Send + Sync {
    /// Inserts or replaces (tenant, id).
    fn put_dashboard(&self, dashboard: &StoredDashboard) -> StoreResult<()>;

    /// The dashboard `id` of `tenant`, if any.
    fn get_dashboard(&self, tenant: &str, id: &str) -> StoreResult<Option<StoredDashboard>>;

    /// The tenant's dashboards ordered by id (byte-wise, as the other listings).
    fn list_dashboards(&self, tenant: &str) -> StoreResult<Vec<StoredDashboard>>;

    /// Deletes the dashboard `id` of `tenant`; whether it existed.
    fn delete_dashboard(&self, tenant: &str, id: &str) -> StoreResult<bool>;
}
