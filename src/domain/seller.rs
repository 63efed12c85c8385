//! The seller on a tenant's documents (`/v1/settings/invoice`): legal identity, bank details,
//! wording and look. Checked here; the logo's pixels are checked by the renderer.

use super::contact::{Address, ContactError, Email, Locale, TaxId, check_text};
use base64::Engine;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SellerError {
    #[error(transparent)]
    Contact(#[from] ContactError),
    #[error("`{0}` is not a valid IBAN (country code, check digits and account, mod-97)")]
    Iban(String),
    #[error("`{0}` is not a valid BIC (8 or 11 characters, e.g. DEUTDEFF)")]
    Bic(String),
    #[error("phone may hold digits, spaces and + ( ) - . only, at most 40 characters")]
    Phone,
    #[error("accent_color `{0}` is not a #RRGGBB colour")]
    Color(String),
    #[error(
        "logo must be a data URL of a PNG or JPEG image (data:image/png;base64,…), at most {max} KiB",
        max = LOGO_MAX_BYTES / 1024
    )]
    Logo,
    #[error("payment_method_url must be an http(s) URL of at most 500 characters")]
    Link,
}

/// Where a customer updates their payment method (the tenant's billing portal): an absolute
/// http(s) URL, stored as the URL standard writes it (`<` becomes `%3C`).
pub fn check_link(s: &str) -> Result<String, SellerError> {
    match url::Url::parse(s) {
        Ok(u)
            if s.len() <= 500
                && matches!(u.scheme(), "https" | "http")
                && u.host_str().is_some_and(|h| !h.is_empty()) =>
        {
            Ok(u.into())
        }
        _ => Err(SellerError::Link),
    }
}

/// Decoded logo size limit: a logo is drawn a few centimetres wide.
pub const LOGO_MAX_BYTES: usize = 256 * 1024;

/// An IBAN, stored without spaces in upper case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Iban(String);

impl Iban {
    /// ISO 13616: two letters, two check digits, up to 30 letters and digits, and the whole
    /// number ≡ 1 mod 97 once the first four characters move to the end.
    pub fn parse(s: &str) -> Result<Self, SellerError> {
        let compact: String = s
            .chars()
            .filter(|c| *c != ' ')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let bad = || SellerError::Iban(s.to_owned());
        let b = compact.as_bytes();
        if !(15..=34).contains(&b.len())
            || !b[..2].iter().all(u8::is_ascii_uppercase)
            || !b[2..4].iter().all(u8::is_ascii_digit)
            || !b.iter().all(u8::is_ascii_alphanumeric)
        {
            return Err(bad());
        }
        let rearranged = compact[4..].chars().chain(compact[..4].chars());
        let mut rem: u32 = 0;
        for c in rearranged {
            let v = c.to_digit(36).ok_or_else(bad)?;
            rem = if v >= 10 {
                (rem * 100 + v) % 97
            } else {
                (rem * 10 + v) % 97
            };
        }
        if rem != 1 {
            return Err(bad());
        }
        Ok(Self(compact))
    }

    /// Groups of four, as printed on documents.
    pub fn display(&self) -> String {
        self.0
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl TryFrom<String> for Iban {
    type Error = SellerError;
    fn try_from(s: String) -> Result<Self, SellerError> {
        Self::parse(&s)
    }
}

impl From<Iban> for String {
    fn from(i: Iban) -> String {
        i.0
    }
}

pub fn check_bic(s: &str) -> Result<String, SellerError> {
    let b = s.as_bytes();
    let ok = (b.len() == 8 || b.len() == 11)
        && b[..6].iter().all(u8::is_ascii_uppercase)
        && b[6..]
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if ok {
        Ok(s.to_owned())
    } else {
        Err(SellerError::Bic(s.to_owned()))
    }
}

pub fn check_phone(s: &str) -> Result<String, SellerError> {
    let ok = !s.trim().is_empty()
        && s.chars().count() <= 40
        && s.chars()
            .all(|c| c.is_ascii_digit() || " +()-.".contains(c));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(SellerError::Phone)
    }
}

/// `#RRGGBB`, stored in lower case.
pub fn check_color(s: &str) -> Result<String, SellerError> {
    let hex = s.strip_prefix('#').unwrap_or_default();
    if hex.len() == 6 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(format!("#{}", hex.to_ascii_lowercase()))
    } else {
        Err(SellerError::Color(s.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageType {
    Png,
    Jpeg,
}

/// A logo from a `data:` URL: the type must match the bytes' signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logo {
    pub kind: ImageType,
    pub bytes: Vec<u8>,
}

impl Logo {
    pub fn from_data_url(s: &str) -> Result<Self, SellerError> {
        let (kind, data) = if let Some(d) = s.strip_prefix("data:image/png;base64,") {
            (ImageType::Png, d)
        } else if let Some(d) = s
            .strip_prefix("data:image/jpeg;base64,")
            .or_else(|| s.strip_prefix("data:image/jpg;base64,"))
        {
            (ImageType::Jpeg, d)
        } else {
            return Err(SellerError::Logo);
        };
        if data.len() > LOGO_MAX_BYTES / 3 * 4 + 8 {
            return Err(SellerError::Logo);
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|_| SellerError::Logo)?;
        let signature_ok = match kind {
            ImageType::Png => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            ImageType::Jpeg => bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
        };
        if !signature_ok || bytes.len() > LOGO_MAX_BYTES {
            return Err(SellerError::Logo);
        }
        Ok(Self { kind, bytes })
    }

    pub fn data_url(&self) -> String {
        let mime = match self.kind {
            ImageType::Png => "png",
            ImageType::Jpeg => "jpeg",
        };
        format!(
            "data:image/{mime};base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&self.bytes)
        )
    }
}

impl Serialize for Logo {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.data_url())
    }
}

impl<'de> Deserialize<'de> for Logo {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Logo::from_data_url(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BankAccount {
    pub iban: Option<Iban>,
    pub bic: Option<String>,
    pub account_number: Option<String>,
}

impl BankAccount {
    pub fn is_empty(&self) -> bool {
        self.iban.is_none() && self.account_number.is_none()
    }
}

/// Which customer e-mails a tenant sends (all by default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Notifications {
    pub invoice_finalized: bool,
    pub payment_succeeded: bool,
    pub payment_failed: bool,
    pub credit_note_issued: bool,
    pub trial_ending: bool,
    pub upcoming_renewal: bool,
}

impl Default for Notifications {
    fn default() -> Self {
        Self {
            invoice_finalized: true,
            payment_succeeded: true,
            payment_failed: true,
            credit_note_issued: true,
            trial_ending: true,
            upcoming_renewal: true,
        }
    }
}

/// The tenant's seller details; every field optional so a tenant starts with none and
/// documents print what there is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct InvoiceSettings {
    pub legal_name: Option<String>,
    pub address: Option<Address>,
    pub tax_ids: Vec<TaxId>,
    pub email: Option<Email>,
    pub phone: Option<String>,
    pub bank: Option<BankAccount>,
    pub payment_terms: Option<String>,
    pub footer: Option<String>,
    /// Documents for customers without a supported locale of their own use this one.
    pub locale: Option<Locale>,
    pub accent_color: Option<String>,
    pub logo: Option<Logo>,
    #[serde(default)]
    pub notifications: Notifications,
    /// Linked from payment-failed e-mails (the tenant's billing portal, say).
    #[serde(default)]
    pub payment_method_url: Option<String>,
    /// The chart of accounts the journal export posts to.
    #[serde(default)]
    pub accounts: super::journal::Accounts,
}

/// Checks the free-text fields' lengths (the typed ones check themselves).
pub fn check_texts(s: &InvoiceSettings) -> Result<(), SellerError> {
    if let Some(n) = &s.legal_name {
        check_text("legal_name", n, 200)?;
    }
    if let Some(t) = &s.payment_terms {
        check_text("payment_terms", t, 1000)?;
    }
    if let Some(f) = &s.footer {
        check_text("footer", f, 1000)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn payment_method_links_are_web_addresses() {
        assert!(check_link("https://app.example.com/billing?x=1").is_ok());
        for bad in [
            "javascript:alert(1)",
            "ftp://example.com/",
            "https://",
            "/billing",
            "data:text/html,hi",
            &format!("https://example.com/{}", "a".repeat(500)),
        ] {
            assert_eq!(check_link(bad), Err(SellerError::Link), "{bad}");
        }
    }

    #[test]
    fn ibans_check_their_digits() {
        for ok in [
            "DE89 3704 0044 0532 0130 00",
            "PL61109010140000071219812874",
            "fr1420041010050500013m02606",
            "GB29NWBK60161331926819",
        ] {
            assert!(Iban::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "DE89 3704 0044 0532 0130 01",
            "PL6110901014000007121981287",
            "XX",
            "DE8937040044053201300!",
            "",
        ] {
            assert!(Iban::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Iban::parse("de89370400440532013000").unwrap().display(),
            "DE89 3704 0044 0532 0130 00"
        );
    }

    proptest! {
        /// Changing one digit of a valid IBAN is always caught (mod 97 detects single
        /// substitutions).
        #[test]
        fn one_wrong_digit_is_caught(pos in 4usize..22, delta in 1u32..10) {
            let good = "DE89370400440532013000";
            let mut chars: Vec<char> = good.chars().collect();
            let d = chars[pos].to_digit(10).unwrap();
            chars[pos] = char::from_digit((d + delta) % 10, 10).unwrap();
            let bad: String = chars.into_iter().collect();
            prop_assert!(Iban::parse(&bad).is_err());
        }
    }

    #[test]
    fn bic_phone_colour() {
        assert!(check_bic("DEUTDEFF").is_ok());
        assert!(check_bic("DEUTDEFF500").is_ok());
        assert!(check_bic("deutdeff").is_err());
        assert!(check_bic("DEUT").is_err());
        assert!(check_phone("+48 (22) 123-45-67").is_ok());
        assert!(check_phone("call me").is_err());
        assert_eq!(check_color("#1A2B3C").unwrap(), "#1a2b3c");
        assert!(check_color("1A2B3C").is_err());
        assert!(check_color("#12345").is_err());
    }

    #[test]
    fn logos_must_be_what_they_claim() {
        let png = base64::engine::general_purpose::STANDARD.encode(b"\x89PNG\r\n\x1a\nrest");
        assert!(Logo::from_data_url(&format!("data:image/png;base64,{png}")).is_ok());
        assert!(Logo::from_data_url(&format!("data:image/jpeg;base64,{png}")).is_err());
        assert!(Logo::from_data_url("data:image/svg+xml;base64,PHN2Zz4=").is_err());
        assert!(Logo::from_data_url("https://example.com/logo.png").is_err());
        assert!(Logo::from_data_url("data:image/png;base64,!!!").is_err());
        let big = base64::engine::general_purpose::STANDARD
            .encode([b"\x89PNG\r\n\x1a\n".as_slice(), &vec![0; LOGO_MAX_BYTES]].concat());
        assert!(Logo::from_data_url(&format!("data:image/png;base64,{big}")).is_err());
    }
}
