//! Runs `scripts/einvoice_check.py` (XSD, CEN EN 16931 schematron, Peppol rules) over a
//! directory of e-invoices, in the virtualenv `.ci/run` creates (`.einv/`, or the interpreter
//! in `EINVOICE_PYTHON`). Without it: `None` locally, a failure under `CI=true`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn python() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = std::env::var_os("EINVOICE_PYTHON")
        .map(PathBuf::from)
        .or_else(|| Some(root.join(".einv/bin/python")))
        .filter(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the e-invoice checker's virtualenv is missing (.ci/run creates .einv/)"
        );
        eprintln!(
            "e-invoice validation skipped: no .einv/ (python3 -m venv .einv && \
             .einv/bin/pip install -r scripts/einvoice-requirements.txt)"
        );
    }
    found
}

/// The checker's report on `dir`; panics if any document fails or a broken one passes.
pub fn validate(dir: &Path) -> Option<String> {
    let python = python()?;
    let out = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/einvoice_check.py"))
        .arg(dir)
        .output()
        .expect("run the e-invoice checker");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the validators refused documents:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains(" 0 failed asserts"), "{report}");
    Some(report)
}
