//! Customer contact data checked at the edge: email, country, locale, tax ids, address.

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContactError {
    #[error("`{0}` is not a valid email address")]
    Email(String),
    #[error("`{0}` is not an ISO 3166-1 alpha-2 country code (e.g. PL, DE, US)")]
    Country(String),
    #[error("`{0}` is not a valid locale (expected a language tag such as `en` or `pl-PL`)")]
    Locale(String),
    #[error("tax id type `{0}` is not valid (expected a lower-case type such as `eu_vat`)")]
    TaxIdType(String),
    #[error("tax id value must be 1 to 64 characters without control characters")]
    TaxIdValue,
    #[error("{field} must be at most {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error("{field} must not contain control characters")]
    ControlCharacters { field: &'static str },
}

/// An email address in the pragmatic sense mail systems accept (RFC 5321 lengths, one `@`,
/// a dotted domain, no spaces). Deliverability is the mail server's business, not ours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Self, ContactError> {
        let bad = || ContactError::Email(s.to_owned());
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = s.split_once('@').ok_or_else(bad)?;
        let labels_ok = domain.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
        if local.is_empty()
            || local.len() > 64
            || domain.contains('@')
            || !domain.contains('.')
            || !labels_ok
        {
            return Err(bad());
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = ContactError;
    fn try_from(s: String) -> Result<Self, ContactError> {
        Self::parse(&s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

/// ISO 3166-1 alpha-2 codes, sorted for binary search.
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS XK YE YT ZA ZM ZW";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Country([u8; 2]);

impl Country {
    pub fn parse(s: &str) -> Result<Self, ContactError> {
        let known = s.len() == 2
            && COUNTRIES
                .split(' ')
                .collect::<Vec<_>>()
                .binary_search(&s)
                .is_ok();
        if !known {
            return Err(ContactError::Country(s.to_owned()));
        }
        let b = s.as_bytes();
        Ok(Self([b[0], b[1]]))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("ZZ")
    }
}

impl TryFrom<String> for Country {
    type Error = ContactError;
    fn try_from(s: String) -> Result<Self, ContactError> {
        Self::parse(&s)
    }
}

impl From<Country> for String {
    fn from(c: Country) -> String {
        c.as_str().to_owned()
    }
}

/// A BCP 47 language tag of the common shape `ll` or `ll-RR` (used to pick document language).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Locale(String);

impl Locale {
    pub fn parse(s: &str) -> Result<Self, ContactError> {
        let (lang, region) = match s.split_once('-') {
            Some((l, r)) => (l, Some(r)),
            None => (s, None),
        };
        let lang_ok = (2..=3).contains(&lang.len()) && lang.bytes().all(|b| b.is_ascii_lowercase());
        let region_ok =
            region.is_none_or(|r| r.len() == 2 && r.bytes().all(|b| b.is_ascii_uppercase()));
        if lang_ok && region_ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ContactError::Locale(s.to_owned()))
        }
    }
}

impl TryFrom<String> for Locale {
    type Error = ContactError;
    fn try_from(s: String) -> Result<Self, ContactError> {
        Self::parse(&s)
    }
}

impl From<Locale> for String {
    fn from(l: Locale) -> String {
        l.0
    }
}

/// Free text from users (names, descriptions) is stored verbatim; only its length and
/// control characters (which break PDFs, CSV and logs) are checked.
pub fn check_text(field: &'static str, s: &str, max: usize) -> Result<(), ContactError> {
    if s.chars().count() > max {
        return Err(ContactError::TooLong { field, max });
    }
    if s.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ContactError::ControlCharacters { field });
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaxId {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

impl TaxId {
    pub fn parse(kind: &str, value: &str) -> Result<Self, ContactError> {
        let kind_ok = (2..=16).contains(&kind.len())
            && kind.contains('_')
            && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        if !kind_ok {
            return Err(ContactError::TaxIdType(kind.to_owned()));
        }
        if value.trim().is_empty()
            || value.chars().count() > 64
            || value.chars().any(char::is_control)
        {
            return Err(ContactError::TaxIdValue);
        }
        Ok(Self {
            kind: kind.to_owned(),
            value: value.to_owned(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Address {
    pub line1: Option<String>,
    pub line2: Option<String>,
    pub city: Option<String>,
    pub postal_code: Option<String>,
    pub state: Option<String>,
    pub country: Option<Country>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countries_are_sorted_for_binary_search() {
        let v: Vec<_> = COUNTRIES.split(' ').collect();
        assert!(v.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn emails() {
        for ok in ["a@b.co", "jan.kowalski+billing@example.com.pl", "x@żółw.pl"] {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "not-an-email",
            "a@b",
            "@b.com",
            "a@@b.com",
            "a b@c.com",
            "a@-b.com",
            "a@b..com",
            "",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn countries_and_locales() {
        assert!(Country::parse("PL").is_ok());
        assert!(Country::parse("pl").is_err());
        assert!(Country::parse("XX").is_err());
        assert!(Locale::parse("pl-PL").is_ok());
        assert!(Locale::parse("en").is_ok());
        assert!(Locale::parse("EN_us").is_err());
    }

    #[test]
    fn text_is_kept_verbatim_but_bounded() {
        assert!(check_text("name", "Robert'); DROP TABLE customers;--", 200).is_ok());
        assert!(check_text("name", "a\u{0}b", 200).is_err());
        assert!(check_text("name", &"x".repeat(201), 200).is_err());
    }
}
