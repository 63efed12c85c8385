//! The webhook receiver the demo starts on loopback: it checks each delivery's Standard
//! Webhooks signature, as a customer's endpoint would, and appends the event to a JSON-lines
//! file.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default, Clone, Copy)]
pub struct Received {
    /// Deliveries whose signature checked out, written to the file.
    pub verified: usize,
    /// Deliveries refused (401): a bad or missing signature.
    pub refused: usize,
}

struct Inner {
    secret: Option<standardwebhooks::Webhook>,
    file: std::fs::File,
    received: Received,
}

#[derive(Clone)]
pub struct Receiver {
    inner: Arc<Mutex<Inner>>,
    pub url: String,
    pub path: PathBuf,
}

impl Receiver {
    /// Listens on 127.0.0.1 (a free port) and writes to `path`.
    pub async fn start(path: PathBuf) -> anyhow::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/webhooks", listener.local_addr()?);
        let inner = Arc::new(Mutex::new(Inner {
            secret: None,
            file: std::fs::File::create(&path)?,
            received: Received::default(),
        }));
        let app = Router::new()
            .route("/webhooks", post(receive))
            .with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Receiver { inner, url, path })
    }

    /// The endpoint's signing secret, once `POST /v1/webhook_endpoints` has shown it.
    pub fn set_secret(&self, secret: &str) -> anyhow::Result<()> {
        let hook = standardwebhooks::Webhook::new(secret)
            .map_err(|e| anyhow::anyhow!("webhook secret: {e}"))?;
        self.lock().secret = Some(hook);
        Ok(())
    }

    pub fn received(&self) -> Received {
        self.lock().received
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut inner = inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let verified = inner
        .secret
        .as_ref()
        .is_some_and(|hook| hook.verify(&body, &headers).is_ok());
    if !verified {
        inner.received.refused += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let written = inner
        .file
        .write_all(&body)
        .and_then(|()| inner.file.write_all(b"\n"));
    if written.is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    inner.received.verified += 1;
    StatusCode::NO_CONTENT
}
