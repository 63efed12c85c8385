//! recur's own HTTP client, used by `recur demo` and `recur bench api`: it talks to the API
//! exactly as a SaaS backend would, bearer key and idempotency keys included, so the demo passes
//! every check a real caller meets and the benchmark measures what callers see.

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Api {
    client: reqwest::Client,
    base: String,
    key: String,
    /// Idempotency keys: unique within a run (the demo's and the benchmark's databases are
    /// always new).
    next_key: AtomicU64,
}

impl Api {
    pub fn new(base: String, key: String) -> anyhow::Result<Api> {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .build()?;
        Ok(Api {
            client,
            base,
            key,
            next_key: AtomicU64::new(1),
        })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(Method::PUT, path, Some(body)).await
    }

    /// A response body as bytes (exports).
    pub async fn bytes(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        self.send(Method::GET, path, None).await
    }

    /// Every object of a list endpoint, page by page (`limit=100`, `starting_after`).
    pub async fn list_all(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut out: Vec<Value> = Vec::new();
        loop {
            let after = out
                .last()
                .and_then(|v| v["id"].as_str())
                .map(|id| format!("&starting_after={id}"))
                .unwrap_or_default();
            let page = self.get(&format!("{path}{sep}limit=100{after}")).await?;
            let data = page["data"].as_array().cloned().unwrap_or_default();
            let more = page["has_more"].as_bool().unwrap_or(false);
            out.extend(data);
            if !more {
                return Ok(out);
            }
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let bytes = self.send(method.clone(), path, body).await?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{method} {path}: the answer is not JSON"))
    }

    /// One request; the body of a 2xx answer, an error naming the request otherwise.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Vec<u8>> {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            let n = self.next_key.fetch_add(1, Ordering::Relaxed);
            req = req
                .header("Idempotency-Key", format!("demo-{n}"))
                .json(&body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let body = resp.bytes().await?.to_vec();
        if !status.is_success() {
            bail!(
                "{method} {path}: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body)
    }
}

/// The `id` of an API object.
pub fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_owned()
}
