//! What erasing a person removes from the copies of their data that events keep.

use serde_json::Value;

/// Fields that hold a person's data, wherever they appear in an event's payload: a
/// customer's own fields and the buyer fields of documents.
pub const PERSONAL_FIELDS: &[&str] = &[
    "name",
    "email",
    "address",
    "phone",
    "tax_ids",
    "external_id",
    "payment_method",
    "customer_name",
    "customer_email",
    "customer_address",
    "customer_tax_ids",
];

/// Sets every personal field in `value` (at any depth) to null; whether anything changed.
pub fn scrub(value: &mut Value) -> bool {
    match value {
        Value::Object(fields) => {
            let mut changed = false;
            for (key, v) in fields.iter_mut() {
                if PERSONAL_FIELDS.contains(&key.as_str()) {
                    if !v.is_null() {
                        *v = Value::Null;
                        changed = true;
                    }
                } else {
                    changed |= scrub(v);
                }
            }
            changed
        }
        Value::Array(items) => items.iter_mut().fold(false, |c, v| scrub(v) | c),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn personal_fields_are_nulled_at_any_depth_and_the_rest_kept() {
        let mut v = json!({
            "id": "cus_1", "name": "Ada", "email": "ada@example.com", "currency": "EUR",
            "address": {"line1": "1 Road", "country": "DE"},
            "lines": [{"description": "Pro", "customer_name": "Ada"}],
            "tax_ids": [], "balance": -500
        });
        assert!(scrub(&mut v));
        assert_eq!(
            v,
            json!({
                "id": "cus_1", "name": null, "email": null, "currency": "EUR", "address": null,
                "lines": [{"description": "Pro", "customer_name": null}],
                "tax_ids": null, "balance": -500
            })
        );
        assert!(!scrub(&mut v), "a second pass changes nothing");
    }
}
