//! Where global counts are sent: one connection per Redis, shared by
//! every request, cheap to clone.
//!
//! The connection is made in a task of its own, not in a request: a
//! request waits for it at most its policy's timeout (50 ms by default),
//! which is too short for a cluster's first contact with every node or
//! Sentinel's several round trips, and a request that gave up would
//! otherwise throw the half-made connection away, again and again. The
//! task has [`CONNECT`] (or the timeout, if longer); meanwhile requests
//! get the failure mode.
//!
//! One Redis: the redis crate's connection manager reconnects by itself.
//! A cluster's or a primary's connection is made again after it broke
//! (an I/O error, a refused connection, `READONLY` from a primary turned
//! replica) or after [`FAILURES`] failures in a row (a primary that no
//! longer answers): Sentinel is asked again, so a failover is followed.

use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{IntoConnectionInfo, RedisError, RedisResult, TlsCertificates};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use strait_route::ratelimit::Redis;
use strait_route::redis::Servers;
use tokio::sync::watch;

/// The longest a connection may take to be made.
const CONNECT: Duration = Duration::from_secs(5);

/// Failures in a row after which a cluster's or a primary's connection
/// is made again.
const FAILURES: u32 = 3;

/// How a connection is made.
enum Reach {
    One(redis::Client),
    Cluster(redis::cluster::ClusterClient),
    /// Asks the sentinels which Redis is the primary, each time it
    /// connects: after a failover, the new one.
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

/// A connection, cheap to clone: each request sends on its own clone.
#[derive(Clone)]
pub enum Link {
    One(ConnectionManager),
    Cluster(ClusterConnection),
    Primary(MultiplexedConnection),
}

/// The shared connection to one Redis, and how to make it.
pub struct Links {
    reach: Reach,
    timeout: Duration,
    /// The connection, numbered: a request that failed on an older one
    /// does not drop a newer one.
    link: Mutex<Option<(u64, Link)>>,
    made: AtomicU64,
    /// A connection being made: its sender is dropped when it is done.
    making: Mutex<Option<watch::Receiver<()>>>,
    /// Why the last attempt failed.
    last_error: Mutex<String>,
    failures: AtomicU32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether `e` says the connection itself is broken, or that it leads to
/// a Redis that no longer takes writes.
pub fn broken(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
        || e.code() == Some("READONLY")
}

impl Links {
    pub fn new(redis: &Redis) -> RedisResult<Arc<Self>> {
        Ok(Arc::new(Links {
            reach: reach(redis)?,
            timeout: redis.timeout,
            link: Mutex::new(None),
            made: AtomicU64::new(0),
            making: Mutex::new(None),
            last_error: Mutex::new(String::new()),
            failures: AtomicU32::new(0),
        }))
    }

    /// The shared connection and its number; if there is none, one is
    /// made in the background and waited for (within the caller's
    /// timeout, which drops this future but not the making).
    pub async fn get(self: &Arc<Self>) -> Result<(u64, Link), String> {
        if let Some(link) = lock(&self.link).clone() {
            return Ok(link);
        }
        let mut done = {
            let mut making = lock(&self.making);
            match &*making {
                Some(done) => done.clone(),
                None => {
                    let (tx, done) = watch::channel(());
                    *making = Some(done.clone());
                    let me = self.clone();
                    tokio::spawn(async move {
                        me.make().await;
                        drop(tx);
                    });
                    done
                }
            }
        };
        // Resolves (with an error) when the sender is dropped: done.
        let _ = done.changed().await;
        match lock(&self.link).clone() {
            Some(link) => Ok(link),
            None => Err(lock(&self.last_error).clone()),
        }
    }

    async fn make(&self) {
        let budget = CONNECT.max(self.timeout);
        match tokio::time::timeout(budget, self.reach.connect(self.timeout)).await {
            Ok(Ok(link)) => {
                let number = self.made.fetch_add(1, Ordering::Relaxed) + 1;
                *lock(&self.link) = Some((number, link));
                self.failures.store(0, Ordering::Relaxed);
            }
            Ok(Err(e)) => *lock(&self.last_error) = format!("cannot connect: {e}"),
            Err(_) => *lock(&self.last_error) = format!("cannot connect in {budget:?}"),
        }
        *lock(&self.making) = None;
    }

    /// A request was counted.
    pub fn answered(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// A request failed on connection `number` (`None`: whichever there
    /// is), because it broke or otherwise.
    pub fn failed(&self, number: Option<u64>, broke: bool) {
        if matches!(self.reach, Reach::One(_)) {
            return;
        }
        let in_a_row = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if !broke && in_a_row < FAILURES {
            return;
        }
        let mut link = lock(&self.link);
        if number.is_none_or(|n| link.as_ref().is_some_and(|(now, _)| *now == n)) {
            *link = None;
            self.failures.store(0, Ordering::Relaxed);
        }
    }
}

impl Reach {
    async fn connect(&self, timeout: Duration) -> RedisResult<Link> {
        Ok(match self {
            Reach::One(client) => {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1);
                Link::One(ConnectionManager::new_lazy_with_config(
                    client.clone(),
                    config,
                )?)
            }
            Reach::Cluster(client) => Link::Cluster(client.get_async_connection().await?),
            Reach::Sentinel(sentinel) => {
                let primary = sentinel.lock().await.async_get_client().await?;
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT.max(timeout)))
                    .set_response_timeout(Some(timeout));
                Link::Primary(
                    primary
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                )
            }
        })
    }
}

/// How to connect to `redis`: TLS checked against its CAs, if it has
/// its own.
fn reach(redis: &Redis) -> RedisResult<Reach> {
    let certs = || TlsCertificates {
        client_tls: None,
        root_cert: redis.ca.as_ref().map(|pem| pem.to_vec()),
    };
    let timeout = redis.timeout;
    Ok(match &redis.servers {
        Servers::One(url) if redis.ca.is_some() => {
            Reach::One(redis::Client::build_with_tls(url.as_str(), certs())?)
        }
        Servers::One(url) => Reach::One(redis::Client::open(url.as_str())?),
        Servers::Cluster(urls) => {
            let mut b = redis::cluster::ClusterClientBuilder::new(urls.iter().map(String::as_str))
                // Making the connection has its own budget (see CONNECT).
                .connection_timeout(timeout.max(Duration::from_secs(1)))
                .response_timeout(timeout)
                .retries(1);
            if redis.ca.is_some() {
                b = b.certs(certs());
            }
            Reach::Cluster(b.build()?)
        }
        Servers::Sentinel { master, urls } => {
            let infos = urls
                .iter()
                .map(|u| u.as_str().into_connection_info())
                .collect::<RedisResult<Vec<_>>>()?;
            let addrs = infos.iter().map(|i| i.addr().clone());
            let mut b = SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)?;
            if redis.tls() {
                b = b.set_client_to_redis_tls_mode(redis::TlsMode::Secure);
            }
            if redis.ca.is_some() {
                b = b
                    .set_client_to_redis_certificates(certs())
                    .set_client_to_sentinel_certificates(certs());
            }
            if let Some(first) = infos.first().map(|i| i.redis_settings()) {
                if let Some(user) = first.username() {
                    b = b
                        .set_client_to_redis_username(user)
                        .set_client_to_sentinel_username(user);
                }
                if let Some(password) = first.password() {
                    b = b
                        .set_client_to_redis_password(password)
                        .set_client_to_sentinel_password(password);
                }
                b = b.set_client_to_redis_db(first.db());
            }
            Reach::Sentinel(tokio::sync::Mutex::new(b.build()?))
        }
    })
}
