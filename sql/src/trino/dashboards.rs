//! The dashboard queries over the demo commerce tables in Trino, as Tidemark runs them
//! (`trino.<table>`), and the same SQL for Trino directly. The integration tests compare the
//! two answers, and `tidemark bench trino` times them.
//!
//! Every query aliases its tables (`FROM trino.orders o`), so [`direct_sql`] can swap each
//! table for a tenant-filtered subquery and leave the rest of the text as it is.

/// `(name, SQL)` pairs, in DataFusion SQL that Trino reads the same way.
pub const DASHBOARD_QUERIES: &[(&str, &str)] = &[
    (
        "revenue_by_channel_day",
        "SELECT o.channel, o.order_date, sum(o.revenue) AS revenue, count(*) AS orders \
         FROM trino.orders o WHERE o.status = 'paid' \
         GROUP BY o.channel, o.order_date ORDER BY o.order_date, o.channel",
    ),
    (
        "top_products",
        "SELECT p.name, p.category, sum(i.quantity) AS units, sum(i.revenue) AS revenue \
         FROM trino.order_items i JOIN trino.products p ON i.product_id = p.product_id \
         GROUP BY p.name, p.category ORDER BY revenue DESC, p.name LIMIT 20",
    ),
    (
        "roas_by_channel",
        "SELECT s.channel, sum(s.spend) AS spend, sum(r.revenue) AS revenue, \
         CAST(sum(r.revenue) AS DOUBLE) / CAST(sum(s.spend) AS DOUBLE) AS roas \
         FROM (SELECT a.channel, a.day, sum(a.spend) AS spend FROM trino.ad_spend a \
               GROUP BY a.channel, a.day) s \
         LEFT JOIN (SELECT o.channel, o.order_date, sum(o.revenue) AS revenue \
                    FROM trino.orders o WHERE o.status = 'paid' \
                    GROUP BY o.channel, o.order_date) r \
           ON r.channel = s.channel AND r.order_date = s.day \
         GROUP BY s.channel ORDER BY s.channel",
    ),
    (
        "weekly_trend",
        "SELECT date_trunc('week', o.order_ts) AS week, sum(o.revenue) AS revenue, \
         count(DISTINCT o.customer_id) AS customers \
         FROM trino.orders o GROUP BY date_trunc('week', o.order_ts) ORDER BY week",
    ),
    (
        "channel_rank",
        "SELECT t.channel, t.revenue, rank() OVER (ORDER BY t.revenue DESC) AS position \
         FROM (SELECT o.channel, sum(o.revenue) AS revenue FROM trino.orders o \
               GROUP BY o.channel) t ORDER BY position, t.channel",
    ),
    (
        "segment_by_device",
        "SELECT c.segment, o.device, count(*) AS orders, sum(o.items) AS items \
         FROM trino.orders o JOIN trino.customers c ON o.customer_id = c.customer_id \
         WHERE o.order_date BETWEEN DATE '2025-02-01' AND DATE '2025-02-28' \
         GROUP BY c.segment, o.device ORDER BY c.segment, o.device",
    ),
    (
        "refunds_by_channel",
        "SELECT o.channel, sum(CASE WHEN o.status = 'refunded' THEN 1 ELSE 0 END) AS refunds, \
         count(*) AS orders, max(o.revenue) AS largest \
         FROM trino.orders o GROUP BY o.channel ORDER BY o.channel",
    ),
    (
        "coupons",
        "SELECT coalesce(o.coupon, 'none') AS coupon, count(*) AS orders, \
         sum(o.discount) AS discount FROM trino.orders o \
         GROUP BY coalesce(o.coupon, 'none') ORDER BY coupon",
    ),
];

/// `sql` for Trino directly: each `trino.<table>` becomes `(SELECT * FROM
/// catalog.schema.<table> WHERE <tenant_column> = '<tenant>')`.
pub fn direct_sql(
    sql: &str,
    tables: &[&str],
    catalog: &str,
    schema: &str,
    tenant_column: &str,
    tenant: &str,
) -> String {
    let mut out = sql.to_string();
    for table in tables {
        out = out.replace(
            &format!("trino.{table} "),
            &format!(
                "(SELECT * FROM {}.{}.{} WHERE {} = {}) ",
                super::dialect::quote_ident(catalog),
                super::dialect::quote_ident(schema),
                super::dialect::quote_ident(table),
                super::dialect::quote_ident(tenant_column),
                super::dialect::quote_string(tenant)
            ),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_sql_filters_every_table_by_tenant() {
        let sql = direct_sql(
            DASHBOARD_QUERIES[1].1,
            &["order_items", "products"],
            "memory",
            "demo",
            "tenant",
            "acme",
        );
        assert!(!sql.contains("trino."), "{sql}");
        assert_eq!(sql.matches(r#""tenant" = 'acme'"#).count(), 2, "{sql}");
    }
}
