//! The engine lease among processes sharing one database: a session-level advisory lock
//! ([`ENGINE_LOCK`]) held on a connection of its own, outside the pool. PostgreSQL releases it
//! when that connection ends, so a process that dies (SIGKILL included: its socket closes)
//! hands the engine to the next process waiting within one poll. Keepalives on the lock's
//! connection bound how long a vanished host keeps it.

use std::time::Duration;

use tokio_postgres::Client;

use super::{Direct, PostgresStore, pg};
use crate::store::{Leadership, StoreResult};

/// The advisory lock whose holder runs the engine.
const ENGINE_LOCK: i64 = 0x7469_6465_656e_6769; // "tideengi"

/// How often a waiting process asks for the lease.
const POLL: Duration = Duration::from_millis(500);

/// Server-side keepalives on the lease's connection: a holder whose host vanished without
/// closing the socket loses the lease after about 10 + 3 × 5 seconds.
const KEEPALIVES: &str =
    "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3";

/// A new connection of its own holding [`ENGINE_LOCK`], or `None` if another has it.
fn try_lease(direct: &Direct) -> StoreResult<Option<Client>> {
    const OP: &str = "take the engine lease";
    direct.block(async {
        let client = direct.connect(OP).await?;
        client.batch_execute(KEEPALIVES).await.map_err(pg(OP))?;
        let held: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&ENGINE_LOCK])
            .await
            .map_err(pg(OP))?
            .get(0);
        Ok(held.then_some(client))
    })
}

impl PostgresStore {
    /// See [`Meta::wait_to_lead`](crate::store::Meta::wait_to_lead).
    pub(super) fn wait_for_lease(&self, standing_by: &dyn Fn()) -> Box<dyn Leadership> {
        let mut told = false;
        loop {
            match try_lease(&self.direct) {
                Ok(Some(client)) => {
                    return Box::new(Lease {
                        direct: self.direct.clone(),
                        client: Some(client),
                    });
                }
                Ok(None) if !told => {
                    standing_by();
                    told = true;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot ask the database for the engine lease; retrying");
                }
            }
            std::thread::sleep(POLL);
        }
    }
}

/// A held lease.
struct Lease {
    direct: Direct,
    client: Option<Client>,
}

impl Leadership for Lease {
    fn check(&mut self) -> StoreResult<bool> {
        if let Some(client) = &self.client {
            let alive =
                !client.is_closed() && self.direct.block(client.simple_query("SELECT 1")).is_ok();
            if alive {
                return Ok(true);
            }
            tracing::warn!("the engine lease's connection was lost; taking the lease again");
            self.client = None;
        }
        match try_lease(&self.direct)? {
            Some(client) => {
                self.client = Some(client);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
