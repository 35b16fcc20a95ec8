//! The parser's fast path: a byte-level tokenizer for the plain SQL most
//! models are written in, feeding sqlparser's parser. On anything outside
//! its small subset it gives up and [`parse_sql`] hands the text to
//! sqlparser whole, so the parser's input and every error it reports are
//! sqlparser's own; a differential test holds the two tokenizers to the
//! same tokens and positions. Spans hold byte offsets (line 0), which
//! [`position`] turns into a line and column. Why, and what it saves:
//! docs/benchmarks.md, "The fast-path tokenizer".

use std::sync::LazyLock;

use rustc_hash::FxHashMap;
use sqlparser::ast::Statement;
use sqlparser::dialect::{Dialect, GenericDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::keywords::{ALL_KEYWORDS, ALL_KEYWORDS_INDEX, Keyword};
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Span, Token, TokenWithSpan, Word};

/// Parses `sql` as sqlparser's `Parser::parse_sql` does, tokenizing it here
/// when it can. Read positions from the result with [`position`].
pub fn parse_sql(dialect: &dyn Dialect, sql: &str) -> Result<Vec<Statement>, ParserError> {
    let fast = tokenize_for(dialect, sql).map(|tokens| {
        Parser::new(dialect)
            .with_tokens_with_locations(tokens)
            .parse_statements()
    });
    match fast {
        Some(Ok(statements)) => return Ok(statements),
        Some(Err(_)) => {}
        None => {
            if let Ok(statements) = Parser::parse_sql(dialect, sql) {
                return Ok(statements);
            }
        }
    }
    // Errors come from sqlparser's own tokens and dialect, with their
    // positions and wording.
    Parser::parse_sql(crate::dialect::plain(dialect), sql)
}

/// Where `at`, a location in a tree parsed from `sql`, points: a 1-based
/// line and column, whether it holds a byte offset from the fast path or a
/// line and column from sqlparser's tokenizer.
pub fn position(sql: &str, at: Location) -> (u32, u32) {
    if at.line != 0 || at.column == 0 {
        return (at.line.max(1) as u32, at.column.max(1) as u32);
    }
    let offset = usize::try_from(at.column - 1).map_or(sql.len(), |o| o.min(sql.len()));
    let before = &sql.as_bytes()[..offset];
    let line = 1 + before.iter().filter(|b| **b == b'\n').count();
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    // The fast path takes only ASCII text, where columns (chars) are bytes.
    (line as u32, (offset - line_start + 1) as u32)
}

/// The tokens of `sql` for `dialect`, or `None` where sqlparser must
/// tokenize it.
fn tokenize_for(dialect: &dyn Dialect, sql: &str) -> Option<Vec<TokenWithSpan>> {
    let known = dialect.is::<SQLiteDialect>()
        || dialect.is::<PostgreSqlDialect>()
        || dialect.is::<GenericDialect>();
    if known { tokenize(sql) } else { None }
}

/// The non-whitespace tokens of `sql`, spans as byte offsets, or `None`
/// when it holds anything outside the subset this tokenizer covers.
pub fn tokenize(sql: &str) -> Option<Vec<TokenWithSpan>> {
    // Columns count chars; [`position`] counts bytes, the same in ASCII.
    if !sql.is_ascii() {
        return None;
    }
    let mut scanner = Scanner {
        sql,
        bytes: sql.as_bytes(),
        pos: 0,
        // About one token in five bytes of typical model SQL: room to spare
        // spares the vector's regrowth.
        tokens: Vec::with_capacity(sql.len() / 4 + 8),
    };
    while scanner.pos < scanner.bytes.len() {
        scanner.next()?;
    }
    Some(scanner.tokens)
}

struct Scanner<'a> {
    sql: &'a str,
    bytes: &'a [u8],
    pos: usize,
    tokens: Vec<TokenWithSpan>,
}

/// Characters sqlparser may read as part of an operator run (PostgreSQL's
/// custom operators, `->`, `=>`, `||/`, ...): an operator followed by one
/// is left to it.
fn continues_operator(byte: u8) -> bool {
    matches!(
        byte,
        b'+' | b'-'
            | b'*'
            | b'/'
            | b'<'
            | b'>'
            | b'='
            | b'~'
            | b'!'
            | b'@'
            | b'#'
            | b'%'
            | b'^'
            | b'&'
            | b'|'
            | b'`'
            | b'?'
            | b':'
    )
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

impl Scanner<'_> {
    fn peek(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.pos + ahead).copied()
    }

    /// The current position as a fast-path location (see the module doc).
    fn location(&self) -> Location {
        Location {
            line: 0,
            column: self.pos as u64 + 1,
        }
    }

    /// Emits `token`, spanning from `start` to the current position.
    fn push(&mut self, token: Token, start: Location) {
        let span = Span::new(start, self.location());
        self.tokens.push(TokenWithSpan { token, span });
    }

    fn next(&mut self) -> Option<()> {
        match self.bytes[self.pos] {
            b' ' | b'\n' | b'\t' | b'\r' => self.pos += 1,
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => self.word()?,
            b'0'..=b'9' => self.number()?,
            b'\'' => self.string()?,
            b'"' => self.quoted_identifier()?,
            b'-' if self.peek(1) == Some(b'-') => self.line_comment()?,
            b'/' if self.peek(1) == Some(b'*') => self.block_comment()?,
            _ => self.punctuation()?,
        }
        Some(())
    }

    fn word(&mut self) -> Option<()> {
        let start = self.location();
        let begin = self.pos;
        while self.peek(0).is_some_and(is_word_byte) {
            self.pos += 1;
        }
        // A word glued to a quote or `&` may be a typed literal (E'..',
        // X'..', U&'..'); `$`, `#` and `@` continue identifiers in some
        // dialects.
        if matches!(
            self.peek(0),
            Some(b'\'' | b'"' | b'&' | b'$' | b'#' | b'@' | b'`')
        ) {
            return None;
        }
        let text = &self.sql[begin..self.pos];
        let word = Word {
            keyword: keyword(text),
            value: text.to_string(),
            quote_style: None,
        };
        self.push(Token::Word(word), start);
        Some(())
    }

    fn number(&mut self) -> Option<()> {
        let start = self.location();
        let begin = self.pos;
        self.skip_digits();
        if self.peek(0) == Some(b'.') {
            self.pos += 1;
            self.skip_digits();
        }
        // Exponents, hex, suffixes, underscores, identifiers starting with
        // digits, a second period: dialect rules.
        if self
            .peek(0)
            .is_some_and(|b| is_word_byte(b) || matches!(b, b'.' | b'\'' | b'"' | b'$'))
        {
            return None;
        }
        let text = self.sql[begin..self.pos].to_string();
        self.push(Token::Number(text, false), start);
        Some(())
    }

    fn skip_digits(&mut self) {
        while self.peek(0).is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    /// The text between a quote at the current position and the next one,
    /// when it needs no unescaping, moving past the closing quote.
    fn quoted(&mut self, quote: u8) -> Option<&str> {
        let begin = self.pos + 1;
        let length = self.bytes[begin..].iter().position(|b| *b == quote)?;
        let end = begin + length;
        // A doubled quote is an escaped one; a backslash may be an escape.
        if self.bytes.get(end + 1) == Some(&quote) || self.bytes[begin..end].contains(&b'\\') {
            return None;
        }
        self.pos = end + 1;
        Some(&self.sql[begin..end])
    }

    fn string(&mut self) -> Option<()> {
        let start = self.location();
        let text = self.quoted(b'\'')?.to_string();
        self.push(Token::SingleQuotedString(text), start);
        Some(())
    }

    fn quoted_identifier(&mut self) -> Option<()> {
        let start = self.location();
        let text = self.quoted(b'"')?;
        if text.is_empty() {
            return None;
        }
        let word = Word {
            value: text.to_string(),
            quote_style: Some('"'),
            keyword: Keyword::NoKeyword,
        };
        self.push(Token::Word(word), start);
        Some(())
    }

    fn line_comment(&mut self) -> Option<()> {
        let rest = &self.bytes[self.pos..];
        let comment = &rest[..rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len())];
        // PostgreSQL ends a comment at a lone carriage return, others do not.
        let lone_return = comment
            .iter()
            .enumerate()
            .any(|(i, b)| *b == b'\r' && comment.get(i + 1).is_some_and(|n| *n != b'\n'));
        if lone_return {
            return None;
        }
        self.pos += comment.len();
        Some(())
    }

    fn block_comment(&mut self) -> Option<()> {
        let body = self.pos + 2;
        // Never closed: sqlparser's error.
        let length = self.sql[body..].find("*/")?;
        // Nesting differs between dialects: leave a comment holding `/*`
        // (even one sharing the closing `*`) to sqlparser.
        if self.sql[body..=body + length].contains("/*") {
            return None;
        }
        self.pos = body + length + 2;
        Some(())
    }

    fn punctuation(&mut self) -> Option<()> {
        let start = self.location();
        let next = self.peek(1);
        let (token, length) = match (self.bytes[self.pos], next) {
            (b'(', _) => (Token::LParen, 1),
            (b')', _) => (Token::RParen, 1),
            (b',', _) => (Token::Comma, 1),
            (b';', _) => (Token::SemiColon, 1),
            // `.5` is a number, `t._c` a special case.
            (b'.', Some(b'0'..=b'9' | b'_')) => return None,
            (b'.', _) => (Token::Period, 1),
            (operator, next) => {
                let (token, length) = match (operator, next) {
                    (b'*', _) => (Token::Mul, 1),
                    (b'+', _) => (Token::Plus, 1),
                    (b'-', _) => (Token::Minus, 1),
                    (b'/', _) => (Token::Div, 1),
                    (b'%', _) => (Token::Mod, 1),
                    (b'=', _) => (Token::Eq, 1),
                    (b'<', Some(b'=')) => (Token::LtEq, 2),
                    (b'<', Some(b'>')) => (Token::Neq, 2),
                    (b'<', _) => (Token::Lt, 1),
                    (b'>', Some(b'=')) => (Token::GtEq, 2),
                    (b'>', _) => (Token::Gt, 1),
                    (b'!', Some(b'=')) => (Token::Neq, 2),
                    (b'|', Some(b'|')) => (Token::StringConcat, 2),
                    (b':', Some(b':')) => (Token::DoubleColon, 2),
                    _ => return None,
                };
                if self.peek(length).is_some_and(continues_operator) {
                    return None;
                }
                (token, length)
            }
        };
        self.pos += length;
        self.push(token, start);
        Some(())
    }
}

/// Uppercase keyword -> keyword, as sqlparser's tokenizer assigns them.
static KEYWORDS: LazyLock<FxHashMap<&'static str, Keyword>> = LazyLock::new(|| {
    ALL_KEYWORDS
        .iter()
        .copied()
        .zip(ALL_KEYWORDS_INDEX.iter().copied())
        .collect()
});

/// Longer than any keyword (a test checks): longer words are plain
/// identifiers.
const MAX_KEYWORD: usize = 64;

fn keyword(word: &str) -> Keyword {
    if word.len() > MAX_KEYWORD {
        return Keyword::NoKeyword;
    }
    let mut upper = [0u8; MAX_KEYWORD];
    let upper = &mut upper[..word.len()];
    upper.copy_from_slice(word.as_bytes());
    upper.make_ascii_uppercase();
    std::str::from_utf8(upper)
        .ok()
        .and_then(|upper| KEYWORDS.get(upper))
        .copied()
        .unwrap_or(Keyword::NoKeyword)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::tokenizer::Tokenizer;

    fn dialects() -> [Box<dyn Dialect>; 3] {
        [
            Box::new(SQLiteDialect {}),
            Box::new(PostgreSqlDialect {}),
            Box::new(GenericDialect {}),
        ]
    }

    /// Whether the fast path took `sql`; panics if it did and disagrees
    /// with sqlparser's tokens (whitespace dropped) in any dialect.
    fn agrees(sql: &str) -> bool {
        let Some(fast) = tokenize(sql) else {
            return false;
        };
        for dialect in dialects() {
            let slow: Vec<TokenWithSpan> = Tokenizer::new(dialect.as_ref(), sql)
                .tokenize_with_location()
                .unwrap_or_else(|e| panic!("fast path took {sql:?}, sqlparser failed: {e}"))
                .into_iter()
                .filter(|t| !matches!(t.token, Token::Whitespace(_)))
                .collect();
            assert_eq!(fast.len(), slow.len(), "{sql:?} in {dialect:?}");
            let at = |l: Location| position(sql, l);
            for (fast, slow) in fast.iter().zip(&slow) {
                assert_eq!(fast.token, slow.token, "{sql:?} in {dialect:?}");
                assert_eq!(
                    (at(fast.span.start), at(fast.span.end)),
                    (at(slow.span.start), at(slow.span.end)),
                    "{sql:?} in {dialect:?}: {:?}",
                    fast.token
                );
                if let (Token::Word(f), Token::Word(s)) = (&fast.token, &slow.token) {
                    assert_eq!(f.keyword, s.keyword, "{sql:?}");
                }
            }
            // And the parser, given either, says the same: equal statements
            // (equality ignores spans; the tokens' are compared above) or an
            // error, which `parse_sql` then takes from sqlparser's tokens.
            let sqlparsers = Parser::parse_sql(dialect.as_ref(), sql);
            let from_tokens = Parser::new(dialect.as_ref())
                .with_tokens_with_locations(fast.clone())
                .parse_statements();
            match (&from_tokens, &sqlparsers) {
                (Ok(fast), Ok(slow)) => assert_eq!(fast, slow, "{sql:?} in {dialect:?}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{sql:?} in {dialect:?}: {from_tokens:?} but {sqlparsers:?}"),
            }
            assert_eq!(parse_sql(dialect.as_ref(), sql), sqlparsers, "{sql:?}");
        }
        true
    }

    #[test]
    fn synthetic_models_take_the_fast_path() {
        let models = crate::synthetic::project(300, 7)
            .into_iter()
            .filter(|(path, _)| path.extension().is_some_and(|e| e == "sql"));
        let mut count = 0;
        for (_, sql) in models {
            assert!(agrees(&sql), "fell back on {sql}");
            count += 1;
        }
        assert!(count >= 300);
    }

    #[test]
    fn example_models_agree() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let mut pending = vec![root];
        let mut taken = 0;
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).expect("read examples") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    pending.push(path);
                } else if path.extension().is_some_and(|e| e == "sql") {
                    let sql = std::fs::read_to_string(&path).expect("read");
                    taken += usize::from(agrees(&sql));
                }
            }
        }
        assert!(
            taken > 5,
            "the example models should mostly take the fast path"
        );
    }

    #[test]
    fn covered_text_agrees_and_the_rest_falls_back() {
        let covered = [
            "select a, b.c, \"Quoted Name\".x from t where a >= 1.5 and b <> 'it' -- note\n",
            "select count(*), sum(x) / 2 % 3 from t group by 1 having x != 0;",
            "select a || b, x::text, 1., 10 from t /* block\ncomment */ where y <= 2",
            "select\r\n  a\r\n from t\twhere\tb = 'line\nbreak'",
            "select _a, a_1 from \"t\".\"u\" -- trailing comment without newline",
            "select * from t where a < b and c > d and e = f",
            "SELECT Select, FROM_x, \"select\" FROM T",
            "/**/select 1",
            "--\nselect 1",
        ];
        for sql in covered {
            assert!(agrees(sql), "should take the fast path: {sql:?}");
        }
        let left_to_sqlparser = [
            "select E'a\\nb'",
            "select x'ab', b'01', n'x', u&'x'",
            "select 'it''s'",
            "select \"a\"\"b\"",
            "select 'a\\'b'",
            "select 1e5, 0x1f, 1_000, 1.2.3, .5",
            "select t.1, t._c from t",
            "select a->>'b', a->'b', a=>b, a==b, a||/b",
            "select x=-1, a*-1",
            "select $1, :name, ?, @v, #t",
            "select a /* nested /* comment */ */ from t",
            "select a /*/ nested? */ */ from t",
            "select a /* never closed",
            "select 'never closed",
            "select \"\"",
            "select caf\u{e9}",
            "select a -- comment\r with a lone return\nfrom t",
            "select [a] from `t`",
            "select a ~ b, a ^ b, a & b, a | b, !a",
            "select a:b",
        ];
        for sql in left_to_sqlparser {
            assert!(tokenize(sql).is_none(), "should fall back: {sql:?}");
        }
    }

    #[test]
    fn random_text_agrees_wherever_the_fast_path_takes_it() {
        const PIECES: &[&str] = &[
            "select", "from", " ", "\n", "\r\n", "\r", "\t", "a", "_b1", "E", "x", "N", "u", "'s'",
            "''", "'it''s'", "'\\''", "\"q\"", "\"\"", "1", "1.5", "1.", ".5", ".", "._", "e",
            "e5", "--c\n", "--c", "/* c */", "/*", "*/", "-", ">", "<", "=", "!", "|", ":", "%",
            "*", "/", "+", "(", ")", ",", ";", "$", "#", "@", "&", "?", "[", "]", "`", "~", "^",
            "\\", "0", "9", "\u{e9}",
        ];
        let mut taken = 0;
        for run in crate::synthetic::piece_runs(PIECES, 10, 0x9e37_79b9_7f4a_7c15).take(30_000) {
            taken += usize::from(agrees(&run.concat()));
        }
        // The generator must exercise the fast path, not only the fallback.
        assert!(taken > 3_000, "only {taken} cases took the fast path");
    }

    #[test]
    fn positions_read_offsets_and_pass_lines_through() {
        let sql = "select a,\n  b\nfrom t";
        let offset = |o: u64| Location::new(0, o + 1);
        assert_eq!(position(sql, offset(0)), (1, 1));
        assert_eq!(position(sql, offset(12)), (2, 3));
        assert_eq!(position(sql, offset(14)), (3, 1));
        // sqlparser's own lines and columns, and its empty location.
        assert_eq!(position(sql, Location::new(3, 6)), (3, 6));
        assert_eq!(position(sql, Location::empty()), (1, 1));
    }

    #[test]
    fn keywords_match_sqlparser() {
        assert!(ALL_KEYWORDS.iter().all(|k| k.len() <= MAX_KEYWORD));
        let every_keyword = ALL_KEYWORDS.iter().map(|k| k.to_lowercase());
        let others = ["SeLeCt", "x", "zzz", "select_x"].map(String::from);
        for word in every_keyword.chain(others) {
            let word = word.as_str();
            let Token::Word(expected) = Token::make_word(word, None) else {
                unreachable!("make_word makes words")
            };
            assert_eq!(keyword(word), expected.keyword, "{word}");
        }
    }
}
