//! `recur serve` terminating TLS itself (rustls) with a configured certificate and key.

use crate::support::{Backend, TestApp, recur_cli};
use recur::domain::tenant::Mode;

struct Pem {
    _dir: tempfile::TempDir,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    cert_pem: String,
}

/// A self-signed certificate for `localhost`, as PEM files.
fn certificate() -> Pem {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let dir = tempfile::tempdir().expect("dir");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let cert_pem = made.cert.pem();
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    Pem {
        _dir: dir,
        cert,
        key,
        cert_pem,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_is_served_over_tls_with_the_configured_certificate() {
    let pem = certificate();
    let (cert, key) = (pem.cert.clone(), pem.key.clone());
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, Mode::Test, move |c| {
        c.server.tls_cert_file = Some(cert);
        c.server.tls_key_file = Some(key);
    })
    .await
    else {
        return;
    };
    let port = app.base.rsplit(':').next().unwrap().to_owned();
    let trusted = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let url = format!("https://localhost:{port}");
    let r = trusted
        .get(format!("{url}/v1/customers"))
        .bearer_auth(&app.key)
        .send()
        .await
        .expect("a TLS request");
    assert_eq!(r.status(), 200);
    // A client that does not trust the certificate, and plain HTTP, get nothing.
    assert!(reqwest::get(format!("{url}/healthz")).await.is_err());
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    // A client that opens a connection and never says hello is let go; others still get in.
    let _idle = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let r = trusted.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_settings_stop_serve_before_it_listens() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let pem = certificate();
    let garbage = pem.cert.with_file_name("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let cases: [(&[(&str, String)], &str); 3] = [
        (
            &[(
                "RECUR_SERVER__TLS_CERT_FILE",
                pem.cert.display().to_string(),
            )],
            "together",
        ),
        (
            &[
                ("RECUR_SERVER__TLS_CERT_FILE", garbage.display().to_string()),
                ("RECUR_SERVER__TLS_KEY_FILE", pem.key.display().to_string()),
            ],
            "no certificate",
        ),
        (
            &[
                (
                    "RECUR_SERVER__TLS_CERT_FILE",
                    pem.cert.display().to_string(),
                ),
                ("RECUR_SERVER__TLS_KEY_FILE", pem.cert.display().to_string()),
            ],
            "tls_key_file",
        ),
    ];
    for (env, says) in cases {
        let out = recur_cli(&app, env, &["serve", "--bind", "127.0.0.1:0"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {err}");
        assert!(err.contains(says), "{env:?}: {err}");
    }
}
