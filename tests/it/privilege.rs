//! The worker under a least-privilege PostgreSQL role (docs/operations.md, "Least
//! privilege"): it reads every table, writes only `pass_code_failures`, and may not
//! create anything, the migrations having been applied by another role.

use sqlx::Connection;
use tucano_auth::store::seed;

use crate::helpers::{by_number, unique, TestWorker, PG_SERVER};

#[tokio::test]
async fn a_role_that_reads_and_writes_only_pass_code_failures_runs_the_worker() {
    let role = unique("role");
    let mut admin = sqlx::PgConnection::connect(&format!("{PG_SERVER}/postgres"))
        .await
        .expect("admin connection");
    sqlx::query(&format!("CREATE ROLE {role} LOGIN PASSWORD 'worker-pass'"))
        .execute(&mut admin)
        .await
        .expect("create role");

    let worker = TestWorker::spawn_with(|s| {
        // The worker's database is migrated and seeded by the harness, as `postgres`.
        let db = s.broker.queue_prefix.clone();
        let grants = format!(
            "GRANT CONNECT ON DATABASE {db} TO {role}; \
             GRANT USAGE ON SCHEMA public TO {role}; \
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}; \
             GRANT INSERT, UPDATE, DELETE ON pass_code_failures TO {role};"
        );
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    let mut conn = sqlx::PgConnection::connect(&format!("{PG_SERVER}/{db}"))
                        .await
                        .expect("db connection");
                    sqlx::raw_sql(&grants)
                        .execute(&mut conn)
                        .await
                        .expect("grants");
                    let _ = conn.close().await;
                });
            });
        });
        s.database.url = format!("postgres://{role}:worker-pass@127.0.0.1:5432/{db}");
    })
    .await;

    // The role really is limited: it may not create a table.
    let mut as_role = sqlx::PgConnection::connect(&format!(
        "postgres://{role}:worker-pass@127.0.0.1:5432/{}",
        worker.db_name
    ))
    .await
    .expect("connect as the role");
    assert!(sqlx::query("CREATE TABLE t (x int)")
        .execute(&mut as_role)
        .await
        .is_err());
    let _ = as_role.close().await;

    let reply = worker
        .call(&by_number(seed::SESSION_TOKEN, "S0000000329"))
        .await;
    assert_eq!(reply.code(), "OK", "{}", reply.raw);
    let wrong = format!(
        r#"{{"token":"{}","access_token_identifier":{{"identifier":"demo-user-1","pass_code":"0000"}}}}"#,
        seed::SESSION_TOKEN
    );
    let reply = worker.call(&wrong).await;
    assert_eq!(reply.code(), "AUTHENTICATION_FAILED", "{}", reply.raw);
    let failures: i64 = sqlx::query_scalar("SELECT count(*) FROM pass_code_failures")
        .fetch_one(&worker.pool)
        .await
        .expect("count");
    assert_eq!(failures, 1, "the wrong pass code was counted");

    drop(worker);
    sqlx::query(&format!("DROP ROLE {role}"))
        .execute(&mut admin)
        .await
        .expect("drop role");
}
