//! Request bodies: form-urlencoded and JSON fields, revoke id lists in JSON or CSV.

use super::*;

pub(super) fn content_type_has(content_type: Option<&HeaderValue>, needle: &str) -> bool {
    content_type
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.to_ascii_lowercase().contains(needle))
}

pub(super) fn utf8(body: &[u8]) -> Result<&str, Reply> {
    std::str::from_utf8(body)
        .map_err(|_| Reply::failure("INVALID_DATA", "The request body is not valid UTF-8."))
}

/// Named fields of a JSON object body or a form-urlencoded body. JSON is assumed when the
/// content type says so, or when there is none and the body starts with `{`.
pub(super) fn parse_fields(
    content_type: Option<&HeaderValue>,
    body: &[u8],
) -> Result<HashMap<String, String>, Reply> {
    let text = utf8(body)?;
    let json = content_type_has(content_type, "json")
        || (content_type.is_none() && text.trim_start().starts_with('{'));
    if !json {
        return Ok(form_pairs(text).into_iter().collect());
    }
    let invalid = || Reply::failure("INVALID_DATA", "The request body is not a JSON object.");
    let serde_json::Value::Object(object) = serde_json::from_str(text).map_err(|_| invalid())?
    else {
        return Err(invalid());
    };
    let fields = object.into_iter().filter_map(|(key, value)| match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(text) => Some((key, text)),
        other => Some((key, other.to_string())),
    });
    Ok(fields.collect())
}

/// The record ids of a revoke request: JSON `[{"id":"…"}]`, or CSV with an `id` column.
pub(super) fn revoke_ids(
    content_type: Option<&HeaderValue>,
    body: &[u8],
) -> Result<Vec<String>, Reply> {
    let text = utf8(body)?;
    let ids = if content_type_has(content_type, "csv") {
        csv_ids(text)
    } else {
        json_ids(text)
    }
    .ok_or_else(|| {
        Reply::failure(
            "INVALID_DATA",
            "Expected a JSON array of objects with an id, or CSV with an id column.",
        )
    })?;
    if ids.is_empty() {
        return Err(Reply::failure("INVALID_DATA", "No record ids were given."));
    }
    if ids.len() > MAX_REVOKE_IDS {
        return Err(Reply::failure(
            "INVALID_DATA",
            "At most 500 records can be deleted per request.",
        ));
    }
    Ok(ids)
}

pub(super) fn json_ids(text: &str) -> Option<Vec<String>> {
    let serde_json::Value::Array(items) = serde_json::from_str(text).ok()? else {
        return None;
    };
    items
        .iter()
        .map(|item| match item.get("id")? {
            serde_json::Value::String(id) => Some(id.clone()),
            serde_json::Value::Number(id) => Some(id.to_string()),
            _ => None,
        })
        .collect()
}

pub(super) fn csv_ids(text: &str) -> Option<Vec<String>> {
    let unquote = |cell: &str| cell.trim().trim_matches('"').to_owned();
    let mut lines = text.lines().filter(|line| !line.trim().is_empty());
    let header: Vec<String> = lines.next()?.split(',').map(unquote).collect();
    let column = header
        .iter()
        .position(|name| name.eq_ignore_ascii_case("id"))?;
    lines
        .map(|line| line.split(',').nth(column).map(unquote))
        .collect()
}

/// `key=value&…` pairs, percent-decoded (`+` is a space).
pub(super) fn form_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

pub(super) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |i: usize| {
        let digit = char::from(*bytes.get(i)?).to_digit(16)?;
        u8::try_from(digit).ok()
    };
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push(high * 16 + low);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_and_json_fields() {
        let form = parse_fields(
            None,
            b"name__v=My+token&expiry_date__v=2030-01-01T00%3A00%3A00Z",
        )
        .unwrap();
        assert_eq!(form["name__v"], "My token");
        assert_eq!(form["expiry_date__v"], "2030-01-01T00:00:00Z");
        let json = parse_fields(None, br#"{"name__v":"x","expiry_date__v":null}"#).unwrap();
        assert_eq!(json["name__v"], "x");
        assert!(!json.contains_key("expiry_date__v"));
        assert!(parse_fields(Some(&JSON_CONTENT_TYPE), b"[1]").is_err());
        assert!(parse_fields(None, b"\xff").is_err());
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn revoke_id_lists() {
        let csv = HeaderValue::from_static("text/csv");
        assert_eq!(
            revoke_ids(Some(&csv), b"name,id\nx,V8T1\n\"y\",\"V8T2\"\n").unwrap(),
            ["V8T1", "V8T2"]
        );
        assert_eq!(revoke_ids(None, br#"[{"id":"V8T1"}]"#).unwrap(), ["V8T1"]);
        assert!(revoke_ids(None, br#"[{"name":"V8T1"}]"#).is_err());
        assert!(revoke_ids(None, b"[]").is_err());
        let many = format!("[{}]", vec![r#"{"id":"a"}"#; 501].join(","));
        assert!(revoke_ids(None, many.as_bytes()).is_err());
    }
}
