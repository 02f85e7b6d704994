//! The control plane's store: etcd through the `etcd-client` crate (gRPC,
//! the v3 API). Only what the agent and `mvm fleet` need: a value and its
//! revision, a prefix, a watch from a revision, leases, a put bound to a
//! lease, a compare-and-swap put and a create-only claim.

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions, WatchStream,
};
use std::time::Duration;

/// A failed etcd call: what it was doing and what etcd (or the network)
/// said.
#[derive(Debug, thiserror::Error)]
#[error("etcd at {endpoints}: cannot {action}: {}", cause(source))]
pub struct EtcdError {
    pub endpoints: String,
    pub action: &'static str,
    #[source]
    pub source: etcd_client::Error,
}

/// What went wrong, briefly: the error and its deepest cause (a gRPC
/// status wraps the transport's error, which wraps the OS's).
fn cause(e: &etcd_client::Error) -> String {
    let top = match e {
        etcd_client::Error::GRpcStatus(s) => s.message().to_string(),
        e => e.to_string(),
    };
    let mut deepest: Option<String> = None;
    let mut at: Option<&dyn std::error::Error> = match e {
        etcd_client::Error::GRpcStatus(s) => std::error::Error::source(s),
        e => std::error::Error::source(e),
    };
    while let Some(s) = at {
        deepest = Some(s.to_string());
        at = s.source();
    }
    match deepest {
        Some(d) if d != top && !top.contains(&d) => format!("{top}: {d}"),
        _ => top,
    }
}

/// A key's value as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub bytes: Vec<u8>,
    pub mod_revision: i64,
    pub lease: i64,
}

/// A connection to an etcd cluster.
#[derive(Clone)]
pub struct Etcd {
    client: Client,
    endpoints: String,
}

/// What a create-only claim found.
pub enum Claim {
    Ours,
    /// Someone holds it: their value.
    Held(Vec<u8>),
}

impl Etcd {
    /// Connects to any of `endpoints` (`http://127.0.0.1:2379`): 3 s to
    /// connect, 5 s per request, HTTP/2 keep-alive so a dead peer is
    /// noticed.
    pub async fn connect(endpoints: &[String]) -> Result<Self, EtcdError> {
        let shown = endpoints.join(",");
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
            .with_keep_alive_while_idle(true);
        let client = Client::connect(endpoints, Some(opts))
            .await
            .map_err(|source| EtcdError {
                endpoints: shown.clone(),
                action: "connect",
                source,
            })?;
        Ok(Self {
            client,
            endpoints: shown,
        })
    }

    fn err(&self, action: &'static str) -> impl FnOnce(etcd_client::Error) -> EtcdError + '_ {
        move |source| EtcdError {
            endpoints: self.endpoints.clone(),
            action,
            source,
        }
    }

    /// The value at `key` (if any) and the store's revision.
    pub async fn get(&mut self, key: &str) -> Result<(Option<Value>, i64), EtcdError> {
        let mut c = self.client.clone();
        let r = c.get(key, None).await.map_err(self.err("read a key"))?;
        let rev = r.header().map_or(0, |h| h.revision());
        let v = r.kvs().first().map(|kv| Value {
            bytes: kv.value().to_vec(),
            mod_revision: kv.mod_revision(),
            lease: kv.lease(),
        });
        Ok((v, rev))
    }

    /// Every key under `prefix`, with its value.
    pub async fn get_prefix(&mut self, prefix: &str) -> Result<Vec<(String, Value)>, EtcdError> {
        let mut c = self.client.clone();
        let r = c
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .map_err(self.err("list keys"))?;
        Ok(r.kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    Value {
                        bytes: kv.value().to_vec(),
                        mod_revision: kv.mod_revision(),
                        lease: kv.lease(),
                    },
                )
            })
            .collect())
    }

    /// Watches `key` from revision `from` (inclusive).
    pub async fn watch(&mut self, key: &str, from: i64) -> Result<WatchStream, EtcdError> {
        let mut c = self.client.clone();
        c.watch(key, Some(WatchOptions::new().with_start_revision(from)))
            .await
            .map_err(self.err("watch a key"))
    }

    /// A lease of `ttl` seconds.
    pub async fn grant(&mut self, ttl: i64) -> Result<i64, EtcdError> {
        let mut c = self.client.clone();
        Ok(c.lease_grant(ttl, None)
            .await
            .map_err(self.err("grant a lease"))?
            .id())
    }

    /// Renews `lease` once; false when it has expired.
    pub async fn keep_alive_once(&mut self, lease: i64) -> Result<bool, EtcdError> {
        let mut c = self.client.clone();
        let (mut keeper, mut stream) = c
            .lease_keep_alive(lease)
            .await
            .map_err(self.err("keep a lease alive"))?;
        keeper
            .keep_alive()
            .await
            .map_err(self.err("keep a lease alive"))?;
        match stream
            .message()
            .await
            .map_err(self.err("keep a lease alive"))?
        {
            Some(r) => Ok(r.ttl() > 0),
            None => Ok(false),
        }
    }

    pub async fn revoke(&mut self, lease: i64) -> Result<(), EtcdError> {
        let mut c = self.client.clone();
        c.lease_revoke(lease)
            .await
            .map_err(self.err("revoke a lease"))?;
        Ok(())
    }

    /// Puts `value` at `key`, bound to `lease` when given; the new revision.
    pub async fn put(
        &mut self,
        key: &str,
        value: &[u8],
        lease: Option<i64>,
    ) -> Result<i64, EtcdError> {
        let mut c = self.client.clone();
        let opts = lease.map(|l| PutOptions::new().with_lease(l));
        let r = c
            .put(key, value, opts)
            .await
            .map_err(self.err("write a key"))?;
        Ok(r.header().map_or(0, |h| h.revision()))
    }

    /// Puts `value` at `key` only if the key is at `revision` (0: absent).
    /// `Err(current)`: it is not; `current` is its revision now.
    pub async fn put_if(
        &mut self,
        key: &str,
        value: &[u8],
        revision: i64,
    ) -> Result<Result<i64, i64>, EtcdError> {
        let mut c = self.client.clone();
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, revision)])
            .and_then([TxnOp::put(key, value, None)])
            .or_else([TxnOp::get(key, None)]);
        let r = c.txn(txn).await.map_err(self.err("write a key"))?;
        if r.succeeded() {
            return Ok(Ok(r.header().map_or(0, |h| h.revision())));
        }
        let current = r
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Get(g) => Some(g.kvs().first().map_or(0, |kv| kv.mod_revision())),
                _ => None,
            })
            .unwrap_or(0);
        Ok(Err(current))
    }

    /// Creates `key` with `value` bound to `lease` if nobody has it.
    pub async fn claim(&mut self, key: &str, value: &[u8], lease: i64) -> Result<Claim, EtcdError> {
        let mut c = self.client.clone();
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key, None)]);
        let r = c.txn(txn).await.map_err(self.err("claim a key"))?;
        if r.succeeded() {
            return Ok(Claim::Ours);
        }
        let holder = r
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
                _ => None,
            })
            .unwrap_or_default();
        Ok(Claim::Held(holder))
    }

    /// Deletes `key` if its value is still `value` (a claim we made).
    pub async fn release(&mut self, key: &str, value: &[u8]) -> Result<(), EtcdError> {
        let mut c = self.client.clone();
        let txn = Txn::new()
            .when([Compare::value(key, CompareOp::Equal, value)])
            .and_then([TxnOp::delete(key, None)]);
        c.txn(txn).await.map_err(self.err("release a key"))?;
        Ok(())
    }
}
