//! The PostgreSQL wire-protocol endpoint with real clients: `tokio-postgres` (simple and extended
//! query protocol) and, when it is installed, `psql`. Login is tenant id + API key.

#[path = "support/shop.rs"]
mod support;

use std::process::Command;

use support::{KEY_A, KEY_B, ORDERS_A, ORDERS_B, Shop};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

async fn connect(shop: &Shop, user: &str, password: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(shop.pg_port)
        .user(user)
        .password(password)
        .dbname("tidemark")
        .connect(NoTls)
        .await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The values of a simple query's rows, as text.
async fn simple(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn sqlstate(error: &tokio_postgres::Error) -> String {
    error
        .as_db_error()
        .map(|e| e.code().code().to_string())
        .unwrap_or_else(|| format!("no database error: {error}"))
}

#[tokio::test]
async fn pgwire_serves_read_only_sql_to_the_right_tenant() {
    let shop = Shop::start().await;
    let a = connect(&shop, "shop-a", KEY_A)
        .await
        .expect("shop-a logs in");

    // Simple query protocol.
    let rows = simple(&a, "SELECT count(*) FROM orders").await;
    assert_eq!(rows, vec![vec![Some(ORDERS_A.to_string())]]);
    let rows = simple(&a, "SELECT 1 AS one; SELECT 'two' AS two").await;
    assert_eq!(rows, vec![vec![Some("1".into())], vec![Some("two".into())]]);

    // Extended query protocol with a parameter, typed results.
    let expected = shop.orders_by_channel("shop-a");
    let rows = a
        .query(
            "SELECT channel, count(*) AS n, max(order_date) AS last_day FROM orders \
             WHERE channel = $1 GROUP BY channel",
            &[&"naver"],
        )
        .await
        .expect("extended query");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>("channel"), "naver");
    assert_eq!(rows[0].get::<_, i64>("n"), expected["naver"]);
    assert_eq!(
        rows[0].get::<_, chrono::NaiveDate>("last_day"),
        chrono::NaiveDate::from_ymd_opt(2025, 12, 31).unwrap()
    );
    let statement = a
        .prepare("SELECT max(order_id) FROM orders WHERE order_id <= $1")
        .await
        .expect("prepare");
    for limit in [10_i64, 1_000] {
        let row = a.query_one(&statement, &[&limit]).await.expect("execute");
        assert_eq!(row.get::<_, i64>(0), limit);
    }
    let row = a
        .query_one(
            "SELECT max(order_ts) > min(order_ts), sum(revenue) > 0 FROM orders",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0) && row.get::<_, bool>(1));
    assert_eq!(shop.max_order_id("shop-a"), ORDERS_A as i64);

    // Analysis functions are there too.
    let rows = simple(
        &a,
        "SELECT quadrant(2.0, 1.0, 1.0, 1.0), abc_class(v) OVER () FROM (VALUES (10.0)) t(v)",
    )
    .await;
    assert_eq!(rows, vec![vec![Some("HH".into()), Some("C".into())]]);

    // Catalog introspection works; writes and DDL do not, in either protocol.
    let tables = simple(&a, "SHOW TABLES").await;
    assert!(
        tables
            .iter()
            .any(|r| r.contains(&Some("vip_orders".into()))),
        "{tables:?}"
    );
    for statement in [
        "DELETE FROM orders",
        "INSERT INTO orders (order_id) VALUES (1)",
        "CREATE TABLE t (x INT)",
        "DROP TABLE orders",
        "SET datafusion.execution.target_partitions = 1",
    ] {
        let error = a.simple_query(statement).await.expect_err(statement);
        assert_eq!(sqlstate(&error), "25006", "{statement}: {error:?}");
        assert!(
            error
                .as_db_error()
                .unwrap()
                .message()
                .contains("not allowed"),
            "{statement}: {error:?}"
        );
        let error = a.execute(statement, &[]).await.expect_err(statement);
        assert_eq!(
            sqlstate(&error),
            "25006",
            "{statement} (extended): {error:?}"
        );
    }
    // Drivers' session chatter is acknowledged, and the connection stays usable after errors.
    simple(&a, "BEGIN; SET application_name = 'bi-tool'; COMMIT").await;
    let rows = simple(&a, "SELECT count(*) FROM orders").await;
    assert_eq!(rows[0][0].as_deref(), Some(ORDERS_A.to_string().as_str()));
    let error = a
        .simple_query("SELECT * FROM no_such_table")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "42P01", "{error:?}");

    // Another tenant sees its own rows, and not shop-a's own table.
    let b = connect(&shop, "shop-b", KEY_B)
        .await
        .expect("shop-b logs in");
    let rows = simple(&b, "SELECT count(*) FROM orders").await;
    assert_eq!(rows, vec![vec![Some(ORDERS_B.to_string())]]);
    assert!(b.simple_query("SELECT * FROM vip_orders").await.is_err());
    let tables = simple(
        &b,
        "SELECT table_name FROM information_schema.tables WHERE table_name = 'vip_orders'",
    )
    .await;
    assert!(tables.is_empty(), "{tables:?}");
}

#[tokio::test]
async fn pgwire_refuses_bad_logins() {
    let shop = Shop::start().await;
    for (user, password) in [
        ("shop-a", "not-the-key-0123456789"),
        ("shop-b", KEY_A), // a real key, of another tenant
        ("nobody", KEY_A),
        ("shop-a", ""),
    ] {
        let error = match connect(&shop, user, password).await {
            Ok(_) => panic!("{user} logged in with a wrong password"),
            Err(e) => e,
        };
        assert_eq!(sqlstate(&error), "28P01", "{user}: {error:?}");
    }
}

/// Runs `psql` against the shop's pgwire port as `user`; `None` when psql is not installed.
async fn psql(shop: &Shop, user: &str, key: &str, commands: &[&str]) -> Option<String> {
    let output = psql_with(shop, user, key, "prefer", commands).await?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "psql failed: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(stdout)
}

/// Runs `psql` with an `sslmode`, returning its output whatever its exit status.
async fn psql_with(
    shop: &Shop,
    user: &str,
    key: &str,
    sslmode: &str,
    commands: &[&str],
) -> Option<std::process::Output> {
    if Command::new("psql").arg("--version").output().is_err() {
        eprintln!("psql is not installed; skipping");
        return None;
    }
    let port = shop.pg_port.to_string();
    let (user, key, sslmode) = (user.to_string(), key.to_string(), sslmode.to_string());
    let commands: Vec<String> = commands.iter().map(|c| c.to_string()).collect();
    let output = tokio::task::spawn_blocking(move || {
        let mut psql = Command::new("psql");
        psql.args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            &user,
            "-d",
            "tidemark",
        ])
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"]);
        for command in &commands {
            psql.args(["-c", command]);
        }
        psql.env("PGPASSWORD", key)
            .env("PGSSLMODE", sslmode)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("run psql")
    })
    .await
    .unwrap();
    Some(output)
}

#[tokio::test]
async fn psql_runs_a_query() {
    let shop = Shop::start().await;
    let Some(stdout) = psql(
        &shop,
        "shop-a",
        KEY_A,
        &["SELECT status, count(*) FROM orders GROUP BY status ORDER BY status"],
    )
    .await
    else {
        return;
    };
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].starts_with("cancelled|"), "{stdout}");
    let total: usize = lines
        .iter()
        .map(|l| l.split('|').nth(1).unwrap().parse::<usize>().unwrap())
        .sum();
    assert_eq!(total, ORDERS_A);
}

#[tokio::test]
async fn psql_lists_and_describes_only_the_tenants_tables() {
    let shop = Shop::start().await;
    let Some(a_tables) = psql(&shop, "shop-a", KEY_A, &["\\dt"]).await else {
        return;
    };
    for table in ["orders", "products", "vip_orders"] {
        assert!(
            a_tables.lines().any(|l| l.split('|').nth(1) == Some(table)),
            "\\dt lacks {table}: {a_tables}"
        );
    }
    let b_tables = psql(&shop, "shop-b", KEY_B, &["\\dt"]).await.unwrap();
    assert!(b_tables.contains("|orders|"), "{b_tables}");
    assert!(
        !b_tables.contains("vip_orders"),
        "shop-a's table leaked: {b_tables}"
    );

    let described = psql(&shop, "shop-a", KEY_A, &["\\d orders"]).await.unwrap();
    for column in ["order_id", "channel", "revenue"] {
        assert!(
            described
                .lines()
                .any(|l| l.starts_with(&format!("{column}|"))),
            "\\d orders lacks {column}: {described}"
        );
    }
}

#[tokio::test]
async fn with_a_certificate_only_tls_connections_are_served() {
    let shop = Shop::start_with(|dir| {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
            .expect("self-signed certificate");
        std::fs::write(dir.join("pg.crt"), cert.cert.pem()).unwrap();
        std::fs::write(dir.join("pg.key"), cert.signing_key.serialize_pem()).unwrap();
        let lines = format!(
            "pgwire_tls_cert = \"{}\"\npgwire_tls_key = \"{}\"\n",
            dir.join("pg.crt").display(),
            dir.join("pg.key").display()
        );
        (lines, String::new())
    })
    .await;
    let sql = "SELECT ssl FROM (SELECT 1 AS x) t CROSS JOIN (SELECT 'on' AS ssl) s";
    let Some(secure) = psql_with(&shop, "shop-a", KEY_A, "require", &[sql, "\\conninfo"]).await
    else {
        return;
    };
    let stdout = String::from_utf8_lossy(&secure.stdout);
    assert!(
        secure.status.success(),
        "TLS psql failed: {}{stdout}",
        String::from_utf8_lossy(&secure.stderr)
    );
    assert!(stdout.contains("SSL connection"), "{stdout}");

    let clear = psql_with(&shop, "shop-a", KEY_A, "disable", &["SELECT 1"])
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&clear.stderr);
    assert!(!clear.status.success(), "a cleartext login was served");
    assert!(stderr.contains("TLS connections only"), "{stderr}");
}
