//! Secrets at rest: provider keys and webhook signing secrets are stored sealed with
//! AES-256-GCM (aws-lc-rs) under a master key that is never in the database, so a dump alone
//! reveals none of them.
//!
//! A sealed value reads `enc:v1:{key id}:{base64(nonce ‖ ciphertext ‖ tag)}`; the key id is
//! the first 8 hex digits of the master key's SHA-256, so values sealed under an earlier key
//! are recognised while `recur secrets rotate` re-seals them. Each value is bound to where it
//! is stored (the additional data names its table, tenant and row), so a sealed value copied
//! into another row does not open. Values stored before sealing existed (plain text) open as
//! they are, and `recur secrets rotate` seals them.

use crate::config::{Secret, SecretsConfig};
use aws_lc_rs::aead::{AES_256_GCM, Aad, Nonce, RandomizedNonceKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use std::path::Path;

const PREFIX: &str = "enc:v1:";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "secrets.master_key must be 32 bytes in base64 (generate one with `openssl rand -base64 32`)"
    )]
    BadKey,
    #[error("master key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "a stored secret was sealed under master key {0}, which is not configured (secrets.master_key, secrets.previous_keys)"
    )]
    UnknownKey(String),
    #[error("a stored secret does not open under its master key: it was altered or moved")]
    Corrupt,
}

struct MasterKey {
    id: String,
    bytes: [u8; 32],
}

impl MasterKey {
    fn from_base64(text: &str) -> Result<Self, VaultError> {
        let decoded = STANDARD
            .decode(text.trim())
            .map_err(|_| VaultError::BadKey)?;
        let bytes: [u8; 32] = decoded.try_into().map_err(|_| VaultError::BadKey)?;
        Ok(MasterKey {
            id: hex::encode(&Sha256::digest(bytes)[..4]),
            bytes,
        })
    }

    fn cipher(&self) -> Result<RandomizedNonceKey, VaultError> {
        RandomizedNonceKey::new(&AES_256_GCM, &self.bytes).map_err(|_| VaultError::BadKey)
    }
}

/// The master key in use and the earlier ones still accepted for opening.
pub struct Vault {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Vault(key {})", self.current.id)
    }
}

impl Vault {
    /// The configured master key (`secrets.master_key`), or the one in
    /// `secrets.master_key_file`, created there (mode 0600) on first use.
    pub fn load(c: &SecretsConfig) -> Result<Vault, VaultError> {
        let current = match &c.master_key {
            Some(key) => MasterKey::from_base64(key.expose())?,
            None => MasterKey::from_base64(&read_or_create(&c.master_key_file)?)?,
        };
        let previous = c
            .previous_keys
            .iter()
            .map(|k| MasterKey::from_base64(k.expose()))
            .collect::<Result<_, _>>()?;
        Ok(Vault { current, previous })
    }

    /// A vault over one key (tests, benchmarks).
    pub fn with_key(key: &Secret) -> Result<Vault, VaultError> {
        Ok(Vault {
            current: MasterKey::from_base64(key.expose())?,
            previous: Vec::new(),
        })
    }

    /// The id of the key values are sealed under now.
    pub fn key_id(&self) -> &str {
        &self.current.id
    }

    /// Seals `plain`, bound to `context` (where it is stored).
    pub fn seal(&self, context: &str, plain: &str) -> Result<String, VaultError> {
        let mut data = plain.as_bytes().to_vec();
        let nonce = self
            .current
            .cipher()?
            .seal_in_place_append_tag(Aad::from(context.as_bytes()), &mut data)
            .map_err(|_| VaultError::Corrupt)?;
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&data);
        Ok(format!(
            "{PREFIX}{}:{}",
            self.current.id,
            STANDARD.encode(out)
        ))
    }

    /// Opens a stored value sealed for `context`; a value stored in plain text before sealing
    /// existed is returned as it is.
    pub fn open(&self, context: &str, stored: &str) -> Result<Secret, VaultError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(Secret::new(stored));
        };
        let (id, body) = rest.split_once(':').ok_or(VaultError::Corrupt)?;
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
            .ok_or_else(|| VaultError::UnknownKey(id.to_owned()))?;
        let raw = STANDARD.decode(body).map_err(|_| VaultError::Corrupt)?;
        if raw.len() < 12 {
            return Err(VaultError::Corrupt);
        }
        let (nonce, sealed) = raw.split_at(12);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| VaultError::Corrupt)?;
        let mut sealed = sealed.to_vec();
        let plain = key
            .cipher()?
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut sealed)
            .map_err(|_| VaultError::Corrupt)?;
        String::from_utf8(plain.to_vec())
            .map(Secret::new)
            .map_err(|_| VaultError::Corrupt)
    }

    /// Whether a stored value is not sealed under the current key (plain text, or an earlier
    /// key): what `recur secrets rotate` re-seals.
    pub fn needs_resealing(&self, stored: &str) -> bool {
        stored
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .is_none_or(|(id, _)| id != self.current.id)
    }
}

/// The key file's text, made with a fresh random key when there is none. Created under a
/// temporary name and linked into place, so processes starting at once agree on one key.
fn read_or_create(path: &Path) -> Result<String, VaultError> {
    let failed = |source| VaultError::KeyFile {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok(text),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(failed(e)),
        Err(_) => {}
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    let key = STANDARD.encode(rand::random::<[u8; 32]>());
    let tmp = path.with_extension(format!("tmp{}", hex::encode(rand::random::<[u8; 8]>())));
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(failed)?;
        file.write_all(key.as_bytes()).map_err(failed)?;
        file.sync_all().map_err(failed)?;
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            // The key must survive a power cut once anything is sealed under it.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(failed)?;
            }
            tracing::warn!(path = %path.display(), "created a master key for secrets at rest: back it up apart from the database (without it, stored provider and webhook secrets cannot be read)");
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read_to_string(path).map_err(failed)
        }
        Err(e) => Err(failed(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Secret {
        Secret::new(STANDARD.encode([byte; 32]))
    }

    #[test]
    fn a_sealed_value_opens_in_its_place_only() {
        let vault = Vault::with_key(&key(1)).unwrap();
        let sealed = vault
            .seal("webhook_endpoints:ten_a:we_1", "whsec_abc")
            .unwrap();
        assert!(
            sealed.starts_with("enc:v1:") && !sealed.contains("whsec_abc"),
            "{sealed}"
        );
        assert_eq!(
            vault
                .open("webhook_endpoints:ten_a:we_1", &sealed)
                .unwrap()
                .expose(),
            "whsec_abc"
        );
        assert!(matches!(
            vault.open("webhook_endpoints:ten_b:we_1", &sealed),
            Err(VaultError::Corrupt)
        ));
        assert_ne!(
            sealed,
            vault
                .seal("webhook_endpoints:ten_a:we_1", "whsec_abc")
                .unwrap()
        );
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(
            vault
                .open("webhook_endpoints:ten_a:we_1", &tampered)
                .is_err()
        );
    }

    #[test]
    fn earlier_keys_open_and_plain_values_pass_until_resealed() {
        let old = Vault::with_key(&key(1)).unwrap();
        let sealed = old.seal("c", "sk_live_x").unwrap();
        let new = Vault::with_key(&key(2)).unwrap();
        assert!(matches!(
            new.open("c", &sealed),
            Err(VaultError::UnknownKey(_))
        ));
        let both = Vault {
            current: MasterKey::from_base64(key(2).expose()).unwrap(),
            previous: vec![MasterKey::from_base64(key(1).expose()).unwrap()],
        };
        assert_eq!(both.open("c", &sealed).unwrap().expose(), "sk_live_x");
        assert!(both.needs_resealing(&sealed));
        assert!(both.needs_resealing("whsec_plain"));
        assert!(!both.needs_resealing(&both.seal("c", "x").unwrap()));
        assert_eq!(
            both.open("c", "whsec_plain").unwrap().expose(),
            "whsec_plain"
        );
        assert!(matches!(
            Vault::with_key(&Secret::new("short")),
            Err(VaultError::BadKey)
        ));
    }

    #[test]
    fn the_key_file_is_made_once_and_read_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("master.key");
        let first = read_or_create(&path).unwrap();
        assert_eq!(read_or_create(&path).unwrap(), first);
        assert_eq!(STANDARD.decode(first.trim()).unwrap().len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
