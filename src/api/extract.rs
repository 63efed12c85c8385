//! Extractors that turn a request into typed input or an [`ApiError`] in the contract's shape.

use super::error::ApiError;
use crate::domain::tenant::Tenant;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

/// The authenticated tenant and its "now" (the test clock for test-mode tenants).
#[derive(Debug, Clone)]
pub struct Ctx {
    pub tenant: Tenant,
    pub now: DateTime<Utc>,
    /// The API key's id: `key_` + the first 16 hex digits of its SHA-256.
    pub api_key: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Ctx>()
            .cloned()
            .ok_or(ApiError::Unauthorized)
    }
}

/// A JSON body. Errors name the offending field by its path (`items[0].quantity`), and an
/// empty body reads as `{}` so action routes (`/cancel`) need no body. A body sent with a
/// `Content-Type` other than JSON is refused (415; none at all reads as JSON), and so are a key
/// given twice in one object, text with control characters other than tab, CR and LF
/// (PostgreSQL cannot store NUL; the others have no place in billing text), and a free-text
/// field holding a payment card number.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("?").to_owned());
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::PayloadTooLarge(super::BODY_LIMIT))?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            if let Some(ct) = content_type
                && !is_json(&ct)
            {
                return Err(ApiError::UnsupportedMediaType(ct));
            }
            &bytes
        };
        let value = checked_json(bytes)?;
        refuse_card_numbers(&value, "")?;
        if !value.is_object() {
            return Err(ApiError::InvalidJson(
                "the body must be a JSON object".into(),
            ));
        }
        serde_path_to_error::deserialize(value)
            .map(Body)
            .map_err(json_error)
    }
}

/// `application/json`, or a `+json` type, with any parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The free-text fields of request bodies, wherever they are nested: where a person types, and
/// so where a card number could be pasted by mistake. Tokens, ids and bank details are not
/// among them (a sandbox token or an external id may well pass the Luhn check).
const FREE_TEXT: &[&str] = &[
    "name",
    "legal_name",
    "display_name",
    "description",
    "memo",
    "product",
    "footer",
    "payment_terms",
    "line1",
    "line2",
    "city",
    "state",
    "postal_code",
];

/// Card data never enters recur: a free-text field ([`FREE_TEXT`]) holding a card number is a
/// 400 naming it.
fn refuse_card_numbers(v: &serde_json::Value, path: &str) -> Result<(), ApiError> {
    use serde_json::Value;
    let field = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, x)| refuse_card_numbers(x, &format!("{path}[{i}]"))),
        Value::Object(fields) => fields.iter().try_for_each(|(k, x)| match x {
            Value::String(text)
                if FREE_TEXT.contains(&k.as_str())
                    && crate::domain::card::holds_card_number(text) =>
            {
                let name = field(k);
                Err(ApiError::invalid(
                    &name,
                    format!(
                        "`{name}` holds what looks like a payment card number; card data never enters recur: collect cards with your payment provider and send its token"
                    ),
                ))
            }
            other => refuse_card_numbers(other, &field(k)),
        }),
        _ => Ok(()),
    }
}

/// Parses JSON, refusing duplicate keys and control characters with the path where they are.
fn checked_json(bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let Checked(value) = serde_path_to_error::deserialize(&mut de).map_err(json_error)?;
    de.end()
        .map_err(|e| ApiError::InvalidJson(format!("invalid JSON body: {e}")))?;
    Ok(value)
}

/// A JSON value read with two checks `serde_json::Value` does not make.
struct Checked(serde_json::Value);

impl<'de> serde::Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> serde::de::Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Checked, E> {
        Ok(Checked(v.into()))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Checked, E> {
        Ok(Checked(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Checked, E> {
        Ok(Checked(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Checked, E> {
        Ok(Checked(v.into()))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Checked, E> {
        if let Some(c) = v
            .chars()
            .find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        {
            return Err(E::custom(format!(
                "text may not contain control characters (found U+{:04X})",
                u32::from(c)
            )));
        }
        Ok(Checked(v.into()))
    }

    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked(serde_json::Value::Null))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        let mut out = Vec::new();
        while let Some(Checked(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Checked(out.into()))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("duplicate key `{key}`")));
            }
            let Checked(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Checked(out.into()))
    }
}

fn json_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    use serde_json::error::Category;
    let path = e.path().to_string();
    let inner = e.into_inner();
    match inner.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::InvalidJson(format!("invalid JSON body: {inner}"))
        }
        Category::Data => field_error(&path, &inner.to_string()),
    }
}

/// Maps serde's messages about a field onto the contract's codes.
pub fn field_error(path: &str, message: &str) -> ApiError {
    let join = |field: &str| {
        if path == "." || path.is_empty() {
            field.to_owned()
        } else if path == field || path.ends_with(&format!(".{field}")) {
            path.to_owned()
        } else {
            format!("{path}.{field}")
        }
    };
    let message = message.split(" at line ").next().unwrap_or(message);
    if let Some(field) = backticked(message, "unknown field `") {
        ApiError::UnknownParam { param: join(field) }
    } else if let Some(field) = backticked(message, "missing field `") {
        ApiError::MissingParam { param: join(field) }
    } else if let Some(field) = backticked(message, "duplicate key `") {
        let param = join(field);
        ApiError::InvalidParam {
            message: format!("`{param}` is given more than once"),
            param,
        }
    } else {
        ApiError::InvalidParam {
            param: path.to_owned(),
            message: message.to_owned(),
        }
    }
}

fn backticked<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    message.strip_prefix(prefix)?.split('`').next()
}

/// Query parameters, parsed strictly: unknown parameters are errors, not silently ignored.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(raw));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|e| {
                let path = e.path().to_string();
                field_error(&path, &e.into_inner().to_string())
            })
    }
}

fn form_urlencoded_parse(raw: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(raw.as_bytes())
}
