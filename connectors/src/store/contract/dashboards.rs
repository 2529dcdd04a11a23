//! The dashboards behaviours of the store contract: saved console dashboards, keyed by
//! (tenant, id), replaced whole, listed per tenant in byte-wise id order.

use crate::store::{Store, StoredDashboard};

/// A dashboard of `tenant` with the id `id`: one panel titled `title`, saved at 10.
fn dashboard(tenant: &str, id: &str, title: &str) -> StoredDashboard {
    StoredDashboard {
        tenant: tenant.to_owned(),
        id: id.to_owned(),
        title: title.to_owned(),
        body: format!(
            r#"{{"panels":[{{"title":"{title}","spec":{{"measures":["orders.count"]}}}}]}}"#
        ),
        updated_at_ms: 10,
    }
}

/// A dashboard put is read back as it was; putting the same (tenant, id) again replaces its
/// title and body (one row, not two); deleting it says it existed once, and it is gone.
pub fn dashboards_are_put_replaced_and_deleted(store: &dyn Store) {
    assert!(store.get_dashboard("a", "sales").expect("get").is_none());
    assert!(store.list_dashboards("a").expect("list").is_empty());

    let saved = dashboard("a", "sales", "Sales");
    store.put_dashboard(&saved).expect("put");
    assert_eq!(
        store.get_dashboard("a", "sales").expect("get"),
        Some(saved.clone())
    );

    let replaced = StoredDashboard {
        title: "Sales, weekly".to_owned(),
        body: r#"{"panels":[{"title":"Weekly","spec":{"measures":["orders.revenue"]}}]}"#
            .to_owned(),
        updated_at_ms: 20,
        ..saved
    };
    store.put_dashboard(&replaced).expect("put again");
    assert_eq!(
        store.get_dashboard("a", "sales").expect("get"),
        Some(replaced.clone())
    );
    assert_eq!(store.list_dashboards("a").expect("list"), [replaced]);

    assert!(store.delete_dashboard("a", "sales").expect("delete"));
    assert!(store.get_dashboard("a", "sales").expect("get").is_none());
    assert!(store.list_dashboards("a").expect("list").is_empty());
    assert!(!store.delete_dashboard("a", "sales").expect("delete again"));
}

/// Dashboards are keyed by (tenant, id): another tenant's dashboard with the same id is a
/// separate row that neither listing, reading nor deleting reaches across; a tenant's listing
/// orders ids byte-wise (upper case before `_` before lower case), on every store.
pub fn dashboards_are_tenant_scoped_and_listed_by_id(store: &dyn Store) {
    for id in ["b", "B", "a", "A", "_"] {
        store
            .put_dashboard(&dashboard("a", id, &format!("A's {id}")))
            .expect("put");
    }
    let theirs = dashboard("b", "a", "B's a");
    store
        .put_dashboard(&theirs)
        .expect("put, same id, other tenant");

    let listed = store.list_dashboards("a").expect("list");
    assert_eq!(
        listed.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["A", "B", "_", "a", "b"]
    );
    assert!(listed.iter().all(|d| d.tenant == "a"));
    assert_eq!(listed[3], dashboard("a", "a", "A's a"));
    assert_eq!(
        store.list_dashboards("b").expect("list"),
        std::slice::from_ref(&theirs)
    );
    assert!(store.list_dashboards("c").expect("list").is_empty());
    assert_eq!(
        store.get_dashboard("b", "a").expect("get"),
        Some(theirs.clone())
    );
    assert!(store.get_dashboard("b", "B").expect("get").is_none());

    // Another tenant's delete reaches nothing of `a`'s.
    assert!(!store.delete_dashboard("b", "B").expect("delete"));
    assert!(!store.delete_dashboard("c", "a").expect("delete"));
    assert!(store.get_dashboard("a", "B").expect("get").is_some());
    assert_eq!(store.list_dashboards("a").expect("list").len(), 5);

    // Deleting `a`'s "a" leaves `b`'s "a".
    assert!(store.delete_dashboard("a", "a").expect("delete"));
    assert!(store.get_dashboard("a", "a").expect("get").is_none());
    assert_eq!(store.get_dashboard("b", "a").expect("get"), Some(theirs));
    assert_eq!(store.list_dashboards("a").expect("list").len(), 4);
}
