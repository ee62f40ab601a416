//! `POST /query`: enough VQL for `api_access_token__sys` (its five fields and `user__sys`,
//! `WHERE` conditions joined by `AND` with `=`, `!=` and `LIKE 'prefix%'`); a query on any other
//! object (or one that does not parse and does not name `api_access_token__sys`) answers an
//! empty result.

use super::*;

const TOKEN_FIELDS: [&str; 6] = [
    "id",
    "name__v",
    "status__v",
    "user__sys",
    "expiry_date__sys",
    "last_used_date__sys",
];

#[derive(Debug, PartialEq, Eq)]
pub(super) struct Query {
    pub(super) fields: Vec<String>,
    pub(super) object: String,
    pub(super) conditions: Vec<Condition>,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) struct Condition {
    pub(super) field: String,
    pub(super) op: Op,
    pub(super) value: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    Equal,
    NotEqual,
    Like,
}

impl Condition {
    fn holds(&self, actual: &str) -> bool {
        match self.op {
            Op::Equal => actual == self.value,
            Op::NotEqual => actual != self.value,
            Op::Like => match self.value.strip_suffix('%') {
                Some(prefix) => actual.starts_with(prefix),
                None => actual == self.value,
            },
        }
    }
}

/// Splits VQL into words, commas, operators and quoted strings (kept with their quotes).
fn words(q: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = q.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == ',' || c == '=' {
            out.push(c.to_string());
            chars.next();
        } else if c == '!' {
            chars.next();
            if chars.next() != Some('=') {
                return None;
            }
            out.push("!=".to_owned());
        } else if c == '\'' {
            chars.next();
            let mut text = String::from("'");
            loop {
                match chars.next()? {
                    '\'' => break,
                    c => text.push(c),
                }
            }
            out.push(text);
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || ",=!'".contains(c) {
                    break;
                }
                word.push(c);
                chars.next();
            }
            out.push(word);
        }
    }
    Some(out)
}

/// Parses `SELECT f, … FROM object [WHERE cond [AND cond]…]`.
pub(super) fn parse_query(q: &str) -> Option<Query> {
    let words = words(q)?;
    let keyword = |i: usize, k: &str| words.get(i).is_some_and(|w| w.eq_ignore_ascii_case(k));
    if !keyword(0, "SELECT") {
        return None;
    }
    let from = words.iter().position(|w| w.eq_ignore_ascii_case("FROM"))?;
    let fields: Vec<String> = words[1..from]
        .iter()
        .filter(|w| *w != ",")
        .map(|w| w.to_ascii_lowercase())
        .collect();
    let object = words.get(from + 1)?.to_ascii_lowercase();
    if fields.is_empty() {
        return None;
    }
    let mut conditions = Vec::new();
    let mut i = from + 2;
    if i < words.len() {
        if !keyword(i, "WHERE") {
            return None;
        }
        i += 1;
        loop {
            let field = words.get(i)?.to_ascii_lowercase();
            let op = match words.get(i + 1)?.to_ascii_uppercase().as_str() {
                "=" => Op::Equal,
                "!=" => Op::NotEqual,
                "LIKE" => Op::Like,
                _ => return None,
            };
            let value = words.get(i + 2)?.strip_prefix('\'')?.to_owned();
            conditions.push(Condition { field, op, value });
            i += 3;
            if i == words.len() {
                break;
            }
            if !keyword(i, "AND") {
                return None;
            }
            i += 1;
        }
    }
    Some(Query {
        fields,
        object,
        conditions,
    })
}

impl State {
    /// `POST /query`, form field `q`. A user sees only their own tokens, an admin everyone's;
    /// deleted tokens are gone, expired ones are `inactive__v`.
    pub(super) fn query(
        &self,
        caller: Caller,
        content_type: Option<&HeaderValue>,
        body: &[u8],
    ) -> Reply {
        let fields = match parse_fields(content_type, body) {
            Ok(fields) => fields,
            Err(reply) => return reply,
        };
        let Some(q) = fields.get("q").filter(|q| !q.trim().is_empty()) else {
            return Reply::failure("PARAMETER_REQUIRED", "Missing required parameter [q].");
        };
        let about_tokens = q.to_ascii_lowercase().contains("api_access_token__sys");
        let Some(query) = parse_query(q) else {
            // Queries on other objects are not read: whatever they say, the result is empty.
            if !about_tokens {
                return query_result(Vec::new());
            }
            return Reply::failure("MALFORMED_QUERY", "The VQL query could not be parsed.");
        };
        if query.object != "api_access_token__sys" {
            return query_result(Vec::new());
        }
        let unknown = query
            .fields
            .iter()
            .chain(query.conditions.iter().map(|c| &c.field))
            .find(|f| !TOKEN_FIELDS.contains(&f.as_str()));
        if let Some(field) = unknown {
            return Reply::failure(
                "INVALID_DATA",
                &format!("No field [{field}] on api_access_token__sys."),
            );
        }
        let admin = self.is_admin(caller.user);
        let now = self.clock.now();
        let rows = self
            .tokens
            .iter()
            .filter(|t| !t.revoked && (admin || t.user == caller.user))
            .filter(|t| {
                query
                    .conditions
                    .iter()
                    .all(|c| c.holds(&self.field_text(t, &c.field, now)))
            })
            .map(|t| {
                let members = query
                    .fields
                    .iter()
                    .map(|f| (f.as_str(), self.field_json(t, f, now)));
                Json::object(members)
            })
            .collect();
        query_result(rows)
    }

    fn field_text(&self, token: &TokenRecord, field: &str, now: SystemTime) -> String {
        match field {
            "id" => token.id.clone(),
            "name__v" => token.name.clone(),
            "status__v" => token.status(now).to_owned(),
            "user__sys" => token.user.to_string(),
            "expiry_date__sys" => token.expiry.map(format_utc).unwrap_or_default(),
            "last_used_date__sys" => token.last_used.map(format_utc).unwrap_or_default(),
            _ => String::new(),
        }
    }

    fn field_json(&self, token: &TokenRecord, field: &str, now: SystemTime) -> Json {
        match field {
            "status__v" if self.settings.picklists_as_arrays => {
                Json::array([Json::string(token.status(now))])
            }
            "expiry_date__sys" => Json::optional_date(token.expiry),
            "last_used_date__sys" => Json::optional_date(token.last_used),
            _ => Json::string(&self.field_text(token, field, now)),
        }
    }
}

fn query_result(rows: Vec<Json>) -> Reply {
    let count = rows.len() as u64;
    let details = Json::object([
        ("pagesize", Json::number(1000)),
        ("pageoffset", Json::number(0)),
        ("size", Json::number(count)),
        ("total", Json::number(count)),
    ]);
    Reply::success(vec![
        ("responseDetails", details),
        ("data", Json::array(rows)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_queries_parse() {
        let q = parse_query(
            "select id, name__v,status__v FROM api_access_token__sys \
             WHERE status__v = 'active__v' AND name__v LIKE 'my app%' and id != 'x'",
        )
        .unwrap();
        assert_eq!(q.fields, ["id", "name__v", "status__v"]);
        assert_eq!(q.object, "api_access_token__sys");
        assert_eq!(q.conditions.len(), 3);
        assert_eq!(q.conditions[1].op, Op::Like);
        assert_eq!(q.conditions[1].value, "my app%");
        assert!(q.conditions[1].holds("my app: host"));
        assert!(!q.conditions[1].holds("other"));
        assert!(q.conditions[2].holds("y"));
    }

    #[test]
    fn malformed_queries_are_refused() {
        for bad in [
            "",
            "SELECT FROM x",
            "SELECT id x",
            "SELECT id FROM x WHERE",
            "SELECT id FROM x WHERE id ~ 'a'",
            "SELECT id FROM x WHERE id = 'a' OR id = 'b'",
            "SELECT id FROM x WHERE id = 'unterminated",
            "SELECT id FROM x ORDER BY id",
        ] {
            assert_eq!(parse_query(bad), None, "{bad}");
        }
    }
}
