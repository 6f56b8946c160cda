//! SQL databases: PostgreSQL (`postgres.rs`, wire protocol v3) and MySQL/MariaDB (`mysql.rs`).
//! What SQL protocols share is here: statements split from a query text, their literals
//! hidden, their operation and table.
pub mod mysql;
pub mod postgres;

use crate::config::QueryText;
use crate::decode::context::TraceContext;
use crate::decode::proto::Ctx;
use crate::decode::{AttrValue, DecodeError, Family, Operation};

/// A statement that ran, as the protocol saw it.
pub(crate) struct Statement<'a> {
    /// `db.system.name`.
    pub system: &'static str,
    /// Its text, when the agent saw it (else it is counted as `unknown_statement`).
    pub text: Option<&'a str>,
    /// The operation the server named on completion, for a statement without text.
    pub completed_as: Option<&'a str>,
    /// `db.namespace`, when known.
    pub namespace: Option<&'a str>,
    /// `error.type` and `db.response.status_code` of a failed statement.
    pub error: Option<String>,
}

/// Emits a statement begun by thread `tid` with `trace`, from `span.0` to `span.1`: named
/// `<operation> <table>` (or its operation, or the system), its text as `ebpf.db_query_text`
/// says (literals hidden by default).
pub(crate) fn emit_statement(cx: &mut Ctx<'_>, st: Statement<'_>, tid: u32, span: (u64, u64), trace: TraceContext) {
    let op = st
        .text
        .and_then(operation)
        .or_else(|| st.completed_as.and_then(|t| t.split(' ').next()).filter(|w| !w.is_empty()).map(str::to_string));
    let table = st.text.and_then(collection);
    let mut attributes = vec![("db.system.name", AttrValue::Str(st.system.into()))];
    if let Some(op) = &op {
        attributes.push(("db.operation.name", AttrValue::Str(op.clone())));
    }
    if let Some(t) = &table {
        attributes.push(("db.collection.name", AttrValue::Str(t.clone())));
    }
    if let Some(db) = st.namespace {
        attributes.push(("db.namespace", AttrValue::Str(db.to_string())));
    }
    match (st.text, cx.options.query_text) {
        (None, _) => cx.error(DecodeError::UnknownStatement),
        (Some(_), QueryText::Off) => {}
        (Some(text), QueryText::Obfuscated) => attributes.push(("db.query.text", AttrValue::Str(obfuscate(text)))),
        (Some(text), QueryText::Full) => attributes.push(("db.query.text", AttrValue::Str(cut(text.trim())))),
    }
    if let Some(e) = &st.error {
        attributes.push(("db.response.status_code", AttrValue::Str(e.clone())));
    }
    let name = match (&op, &table) {
        (Some(op), Some(t)) => format!("{op} {t}"),
        (Some(op), None) => op.clone(),
        _ => st.system.to_string(),
    };
    let op = Operation { family: Family::Db, name, attributes, error: st.error };
    cx.emit_operation(tid, span.0, span.1, (0, 0), trace, op);
}

/// Longest `db.query.text` reported, in bytes (longer texts are cut at a character boundary).
const MAX_TEXT: usize = 1024;

/// The statements of a query text (several may be sent in one), split at `;` outside quotes,
/// dollar quotes and comments; empty ones left out; at most `max`.
pub(crate) fn split_statements(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut scan = Scanner::new(text);
    while let Some((i, c)) = scan.next_code() {
        if c == ';' {
            push_statement(&mut out, &text[start..i], max);
            start = i + 1;
        }
    }
    push_statement(&mut out, &text[start..], max);
    out
}

fn push_statement(out: &mut Vec<String>, s: &str, max: usize) {
    let s = s.trim();
    if !s.is_empty() && out.len() < max {
        out.push(s.to_string());
    }
}

/// `text` cut to at most `MAX_TEXT` bytes, at a character boundary.
fn cut(text: &str) -> String {
    let mut end = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// The text with its literals (strings, numbers) replaced by `?` and its comments removed,
/// whitespace collapsed: what `db.query.text` reports unless literals are to be kept.
pub(crate) fn obfuscate(stmt: &str) -> String {
    let mut out = String::with_capacity(stmt.len().min(MAX_TEXT));
    let mut scan = Scanner::new(stmt);
    let mut last_space = true;
    while let Some(tok) = scan.token() {
        let piece = match tok {
            Token::Literal => "?",
            Token::Comment => continue,
            Token::Space => {
                if !last_space {
                    out.push(' ');
                    last_space = true;
                }
                continue;
            }
            Token::Text(t) => t,
        };
        last_space = false;
        if out.len() + piece.len() > MAX_TEXT {
            break;
        }
        out.push_str(piece);
    }
    out.trim_end().to_string()
}

/// The statement's operation: its first keyword, upper case (`SELECT`, `INSERT`, `BEGIN`).
pub(crate) fn operation(stmt: &str) -> Option<String> {
    let mut scan = Scanner::new(stmt);
    while let Some(tok) = scan.token() {
        match tok {
            Token::Space | Token::Comment => continue,
            Token::Text(t) if t.chars().all(|c| c.is_ascii_alphabetic()) => return Some(t.to_ascii_uppercase()),
            _ => return None,
        }
    }
    None
}

/// The table a simple statement works on: after `FROM` (SELECT, DELETE), `INTO` (INSERT),
/// `UPDATE`, or `TABLE` (`CREATE/DROP/ALTER/TRUNCATE TABLE`), when it is a plain or
/// schema-qualified name (`public.users`, `"Users"`); `None` when it cannot be told simply.
pub(crate) fn collection(stmt: &str) -> Option<String> {
    let mut scan = Scanner::new(stmt);
    let mut words: Vec<&str> = Vec::new();
    while let Some(tok) = scan.token() {
        match tok {
            Token::Space | Token::Comment => {}
            Token::Text(t) => words.push(t),
            Token::Literal => words.push("?"),
        }
        if words.len() > 64 {
            break;
        }
    }
    let op = words.first()?.to_ascii_uppercase();
    let after: &[&str] = match op.as_str() {
        "SELECT" | "DELETE" => &["FROM"],
        "INSERT" => &["INTO"],
        "UPDATE" => &[],
        "CREATE" | "DROP" | "ALTER" | "TRUNCATE" => &["TABLE"],
        _ => return None,
    };
    let at = if after.is_empty() {
        1
    } else {
        words.iter().position(|w| after.iter().any(|a| w.eq_ignore_ascii_case(a)))? + 1
    };
    // `IF [NOT] EXISTS`, `ONLY`
    let mut i = at;
    while words.get(i).is_some_and(|w| ["IF", "NOT", "EXISTS", "ONLY"].iter().any(|k| w.eq_ignore_ascii_case(k))) {
        i += 1;
    }
    let mut name = words.get(i)?.to_string();
    while words.get(i + 1) == Some(&".") && words.get(i + 2).is_some() {
        name.push('.');
        name.push_str(words[i + 2]);
        i += 2;
    }
    let plain = |p: &str| {
        let p = p.trim_matches('"');
        !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '$')
    };
    (name.split('.').all(plain) && !words.get(i + 1).is_some_and(|w| *w == "(" && op == "SELECT")).then_some(name)
}

enum Token<'a> {
    Space,
    Comment,
    Literal,
    Text(&'a str),
}

/// A small SQL lexer: enough to tell code from strings, dollar quotes, comments and numbers.
struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Scanner { text, pos: 0 }
    }

    /// The next character that is code (not in a string, quote or comment), with its index.
    fn next_code(&mut self) -> Option<(usize, char)> {
        loop {
            let at = self.pos;
            match self.token()? {
                Token::Text(t) if t.len() == 1 => return Some((at, t.chars().next()?)),
                _ => continue,
            }
        }
    }

    fn token(&mut self) -> Option<Token<'a>> {
        let rest = &self.text[self.pos..];
        let c = rest.chars().next()?;
        let bytes = rest.as_bytes();
        let (len, tok) = if c.is_whitespace() {
            let n = rest.find(|c: char| !c.is_whitespace()).unwrap_or(rest.len());
            (n, Token::Space)
        } else if rest.starts_with("--") {
            (rest.find('\n').map_or(rest.len(), |n| n + 1), Token::Comment)
        } else if let Some(body) = rest.strip_prefix("/*") {
            (body.find("*/").map_or(rest.len(), |n| n + 4), Token::Comment)
        } else if c == '\'' || ((c == 'E' || c == 'e') && bytes.get(1) == Some(&b'\'')) {
            let open = if c == '\'' { 0 } else { 1 };
            (quoted_end(rest, open, b'\''), Token::Literal)
        } else if c == '"' {
            let n = quoted_end(rest, 0, b'"');
            (n, Token::Text(&rest[..n]))
        } else if c == '$' && dollar_tag(rest).is_some() {
            let tag = dollar_tag(rest).unwrap_or_default();
            let n = rest[tag.len()..].find(tag).map_or(rest.len(), |n| n + 2 * tag.len());
            (n, Token::Literal)
        } else if c.is_ascii_digit() || (c == '.' && bytes.get(1).is_some_and(u8::is_ascii_digit)) {
            let n = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_')).unwrap_or(rest.len());
            (n, Token::Literal)
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let n = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$')).unwrap_or(rest.len());
            (n, Token::Text(&rest[..n]))
        } else {
            (c.len_utf8(), Token::Text(&rest[..c.len_utf8()]))
        };
        self.pos += len.max(1).min(rest.len());
        Some(tok)
    }
}

/// The length of a quoted run starting at `open` (the quote), doubled quotes escaping.
fn quoted_end(rest: &str, open: usize, q: u8) -> usize {
    let b = rest.as_bytes();
    let mut i = open + 1;
    while i < b.len() {
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        if b[i] == b'\\' && q == b'\'' && open == 1 {
            i += 2;
            continue;
        }
        i += 1;
    }
    b.len()
}

/// `$tag$` (or `$$`) at the start of `rest`.
fn dollar_tag(rest: &str) -> Option<&str> {
    let end = rest[1..].find('$')? + 1;
    let tag = &rest[1..end];
    (tag.chars().all(|c| c.is_alphanumeric() || c == '_') && !tag.starts_with(|c: char| c.is_ascii_digit()))
        .then(|| &rest[..=end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_outside_quotes_and_comments() {
        let text = "BEGIN; INSERT INTO t VALUES ('a;b', $$x;y$$); -- c;d\n SELECT 1 /* ; */;;COMMIT";
        assert_eq!(
            split_statements(text, 10),
            ["BEGIN", "INSERT INTO t VALUES ('a;b', $$x;y$$)", "-- c;d\n SELECT 1 /* ; */", "COMMIT"]
        );
        assert_eq!(split_statements(" ; ", 10), Vec::<String>::new());
        assert_eq!(split_statements("a;b;c", 2), ["a", "b"]);
    }

    #[test]
    fn literals_are_hidden() {
        assert_eq!(
            obfuscate("SELECT * FROM users WHERE email = 'a@b.c' AND id = 42 AND x > 1.5e3 -- secret\n AND y = $1"),
            "SELECT * FROM users WHERE email = ? AND id = ? AND x > ? AND y = $1"
        );
        assert_eq!(
            obfuscate("INSERT INTO \"T\" VALUES (E'it\\'s', 'o''k', $tag$pw$tag$)"),
            "INSERT INTO \"T\" VALUES (?, ?, ?)"
        );
        assert_eq!(obfuscate("SELECT col1, t2.c FROM t2"), "SELECT col1, t2.c FROM t2");
        // Unterminated quotes hide everything after them.
        assert_eq!(obfuscate("SELECT 'secret"), "SELECT ?");
    }

    #[test]
    fn operation_and_collection() {
        let cases = [
            ("select * from Users where id = 1", Some("SELECT"), Some("Users")),
            ("SELECT a FROM public.orders o JOIN x ON true", Some("SELECT"), Some("public.orders")),
            ("INSERT INTO items (a) VALUES (1)", Some("INSERT"), Some("items")),
            ("UPDATE \"Acc\" SET a = 1", Some("UPDATE"), Some("\"Acc\"")),
            ("DELETE FROM t", Some("DELETE"), Some("t")),
            ("CREATE TABLE IF NOT EXISTS kv (k text)", Some("CREATE"), Some("kv")),
            ("SELECT 1", Some("SELECT"), None),
            ("SELECT * FROM generate_series(1, 3)", Some("SELECT"), None),
            ("BEGIN", Some("BEGIN"), None),
            ("/* hint */ WITH x AS (SELECT 1) SELECT * FROM x", Some("WITH"), None),
            ("'quoted'", None, None),
        ];
        for (stmt, op, coll) in cases {
            assert_eq!(operation(stmt).as_deref(), op, "{stmt}");
            assert_eq!(collection(stmt).as_deref(), coll, "{stmt}");
        }
    }
}
