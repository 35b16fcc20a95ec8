//! The SQL dialects models are parsed with: sqlparser's SQLite, PostgreSQL,
//! MySQL and generic dialects, each wrapped in [`FastPrefix`], which parses
//! the commonest start of an expression directly. MySQL's reads `"name"`
//! as a name, not a string: Orbital's MariaDB and MySQL sessions run with
//! `ANSI_QUOTES`, so the SQL Orbital writes (double-quoted names) means
//! the same there as everywhere else.
//!
//! sqlparser begins every expression by trying to read a data type there,
//! for typed literals like `DATE '2020-01-01'`, and rolls back when that
//! fails, after building the failure's error message. Before a name
//! (`amount`, `orders.id`, and keywords used as names, like `id` and
//! `key`), a call of one (`coalesce(a, 0)`), or a number or string literal,
//! the attempt mostly cannot succeed: a data type starts with a word; a
//! word that names no built-in type reads as a custom type name, which
//! sqlparser accepts only before a string literal (and only for `xml`) or
//! when brackets or `ARRAY` make it an array type. [`FastPrefix`] checks
//! the next tokens for exactly those cases and, where the attempt cannot
//! succeed, returns what sqlparser's fallback returns; everywhere else
//! sqlparser parses as before. At 10k models this took the parse pass of a
//! cold compile from 200 to 159 ms.
//!
//! Which keywords read as plain names is asked of sqlparser once per
//! process and dialect (does the keyword alone parse as a custom data
//! type?, 0.4 ms), less those that start an expression of their own
//! (`CASE`, `NOT`, `CURRENT_DATE`, ...), listed from sqlparser's parser. A
//! test parses every keyword before every token the fast path accepts,
//! wrapped and plain, in each dialect; others compare random token runs
//! and real models.
//!
//! Successful parses are equal. A failed one may word its error
//! differently (sqlparser remembers where a parse failed and words a second
//! failure there differently), so [`crate::tokens::parse_sql`] reruns it
//! with the [`plain`] dialect, and errors read exactly as sqlparser's. One
//! difference remains, at sqlparser's nesting limit: the skipped attempt
//! counted one level deeper, so a query nested exactly to the limit now
//! parses where sqlparser reported "recursion limit exceeded".
//!
//! The wrapper passes every other `Dialect` method to the inner dialect,
//! so that sqlparser's checks of which dialect it parses (`dialect_of!`)
//! and every dialect option behave as unwrapped. A sqlparser upgrade that
//! adds `Dialect` methods must add them to the lists below, and recheck
//! `STARTS_EXPRESSION` against `parse_expr_prefix_by_reserved_word`; the
//! tests compare wrapped and plain parses.

use std::any::TypeId;
use std::iter::Peekable;
use std::str::Chars;
use std::sync::LazyLock;

use sqlparser::ast::{
    ColumnOption, DataType, Expr, GranteesType, Ident, ObjectName, ObjectNamePart, Statement,
};
use sqlparser::dialect::{
    Dialect, GenericDialect, MySqlDialect, PostgreSqlDialect, Precedence, SQLiteDialect,
};
use sqlparser::keywords::{ALL_KEYWORDS, ALL_KEYWORDS_INDEX, Keyword};
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan};

/// The parser dialect for a dialect name (`sqlite`, `postgres`, `mysql`,
/// `generic`), as a target's `parser_dialect()` gives it.
pub fn dialect_for(name: &str) -> &'static dyn Dialect {
    static SQLITE: LazyLock<FastPrefix<SQLiteDialect>> =
        LazyLock::new(|| FastPrefix::new(SQLiteDialect {}));
    static POSTGRES: LazyLock<FastPrefix<PostgreSqlDialect>> =
        LazyLock::new(|| FastPrefix::new(PostgreSqlDialect {}));
    static GENERIC: LazyLock<FastPrefix<GenericDialect>> =
        LazyLock::new(|| FastPrefix::new(GenericDialect {}));
    static MYSQL: LazyLock<FastPrefix<MySqlDialect>> =
        LazyLock::new(|| FastPrefix::new(MySqlDialect {}).with_double_quoted_names());
    match name {
        "sqlite" => &*SQLITE,
        "postgres" => &*POSTGRES,
        "mysql" => &*MYSQL,
        _ => &*GENERIC,
    }
}

/// The sqlparser dialect `dialect` wraps, or `dialect` itself: what a
/// failed parse is rerun with, for sqlparser's own error. (MySQL's with
/// double-quoted names has no plain equal in sqlparser: itself.)
pub fn plain(dialect: &dyn Dialect) -> &dyn Dialect {
    if dialect.is::<SQLiteDialect>() {
        &SQLiteDialect {}
    } else if dialect.is::<PostgreSqlDialect>() {
        &PostgreSqlDialect {}
    } else if dialect.is::<GenericDialect>() {
        &GenericDialect {}
    } else {
        dialect
    }
}

/// Keywords that start an expression of their own in sqlparser's
/// `parse_expr_prefix_by_reserved_word` (some only in some dialects or
/// before some tokens), and `XML`, a typed string's type: never read
/// directly as names.
const STARTS_EXPRESSION: &[Keyword] = &[
    Keyword::TRUE,
    Keyword::FALSE,
    Keyword::NULL,
    Keyword::CURRENT_CATALOG,
    Keyword::CURRENT_USER,
    Keyword::SESSION_USER,
    Keyword::USER,
    Keyword::CURRENT_TIMESTAMP,
    Keyword::CURRENT_TIME,
    Keyword::CURRENT_DATE,
    Keyword::LOCALTIME,
    Keyword::LOCALTIMESTAMP,
    Keyword::CASE,
    Keyword::CONVERT,
    Keyword::TRY_CONVERT,
    Keyword::CAST,
    Keyword::TRY_CAST,
    Keyword::SAFE_CAST,
    Keyword::EXISTS,
    Keyword::EXTRACT,
    Keyword::CEIL,
    Keyword::FLOOR,
    Keyword::POSITION,
    Keyword::SUBSTR,
    Keyword::SUBSTRING,
    Keyword::OVERLAY,
    Keyword::TRIM,
    Keyword::INTERVAL,
    Keyword::ARRAY,
    Keyword::NOT,
    Keyword::MATCH,
    Keyword::STRUCT,
    Keyword::PRIOR,
    Keyword::MAP,
    Keyword::LAMBDA,
    Keyword::CIRCLE,
    Keyword::BOX,
    Keyword::PATH,
    Keyword::LINE,
    Keyword::LSEG,
    Keyword::POINT,
    Keyword::POLYGON,
    Keyword::XML,
];

/// Implements every listed `Dialect` method by calling the inner dialect's.
macro_rules! delegate {
    (
        flags: $($flag:ident),* $(,)?;
        methods: $(fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty;)*
    ) => {
        $(fn $flag(&self) -> bool {
            self.inner.$flag()
        })*
        $(fn $name(&self, $($arg: $ty),*) -> $ret {
            self.inner.$name($($arg),*)
        })*
    };
}

/// Dialect `D`, parsing the names, calls and literals that start an
/// expression directly (see the module docs).
#[derive(Debug)]
pub struct FastPrefix<D> {
    inner: D,
    /// By `Keyword as usize`: whether a word with this keyword (or none)
    /// reads as a plain name where an expression starts.
    plain_names: Box<[bool]>,
    /// `"name"` is a name, as under MySQL's `ANSI_QUOTES`.
    double_quoted_names: bool,
}

impl<D: Dialect> FastPrefix<D> {
    /// Wraps `inner`, asking it which keywords read as names (0.4 ms).
    pub fn new(inner: D) -> Self {
        let mut plain_names = vec![false; ALL_KEYWORDS_INDEX.len() + 1];
        plain_names[Keyword::NoKeyword as usize] = true;
        for (&keyword, &text) in ALL_KEYWORDS_INDEX.iter().zip(ALL_KEYWORDS) {
            plain_names[keyword as usize] =
                !STARTS_EXPRESSION.contains(&keyword) && names_no_type(&inner, text);
        }
        Self {
            inner,
            plain_names: plain_names.into(),
            double_quoted_names: false,
        }
    }

    /// Reads `"name"` as a name where the inner dialect reads a string.
    pub fn with_double_quoted_names(mut self) -> Self {
        self.double_quoted_names = true;
        self
    }

    /// The expression at the parser's position, when it starts with a
    /// number or string literal, or with a word that can only be a name or
    /// a call there; `None` (nothing consumed) for sqlparser to parse.
    fn direct_prefix(&self, parser: &mut Parser<'_>) -> Option<Result<Expr, ParserError>> {
        let [first, second, third, fourth] = parser.peek_tokens_ref::<4>();
        match &first.token {
            Token::Number(..) | Token::SingleQuotedString(_) => {
                Some(parser.parse_value().map(Expr::Value))
            }
            Token::Word(word)
                if self.plain_names[word.keyword as usize]
                    && only_identifier([second, third, fourth]) =>
            {
                let TokenWithSpan { token, span } = parser.next_token();
                let Token::Word(word) = token else {
                    return None;
                };
                Some(Ok(Expr::Identifier(word.into_ident(span))))
            }
            Token::Word(word)
                if self.plain_names[word.keyword as usize]
                    && second.token == Token::LParen
                    && !self.inner.supports_outer_join_operator()
                    && call_is_no_type(parser) =>
            {
                let TokenWithSpan { token, span } = parser.next_token();
                let Token::Word(word) = token else {
                    return None;
                };
                Some(parser.parse_function(ObjectName::from(vec![word.into_ident(span)])))
            }
            _ => None,
        }
    }
}

/// Whether the call `name(...)` at the parser's position cannot read as a
/// data type: sqlparser would read `(...)` as type modifiers if it holds
/// only words, numbers, strings and commas, and the result as an array
/// type if `[` or `ARRAY` follows, which a string literal after that turns
/// into a typed string. Anything else between the parentheses, or anything
/// else after, and the attempt fails.
fn call_is_no_type(parser: &Parser<'_>) -> bool {
    for n in 2.. {
        match &parser.peek_nth_token_ref(n).token {
            Token::Word(_) | Token::Number(..) | Token::SingleQuotedString(_) | Token::Comma => {}
            Token::RParen => {
                let after = &parser.peek_nth_token_ref(n + 1).token;
                let array = matches!(after, Token::Word(w) if w.keyword == Keyword::ARRAY);
                return !array && *after != Token::LBracket;
            }
            _ => return true,
        }
    }
    true
}

/// Whether sqlparser reads the keyword `text` alone as a custom data type
/// name, as it does any word that is no keyword: then the data type it
/// tries before that word can only fail, as before any other name.
fn names_no_type(dialect: &dyn Dialect, text: &str) -> bool {
    let word = Token::make_word(text, None);
    let data_type = Parser::new(dialect)
        .with_tokens(vec![word])
        .parse_data_type();
    matches!(data_type, Ok(DataType::Custom(name, modifiers)) if modifiers.is_empty() && name.0.len() == 1)
}

impl<D: Dialect> Dialect for FastPrefix<D> {
    fn parse_prefix(&self, parser: &mut Parser<'_>) -> Option<Result<Expr, ParserError>> {
        (self.inner.parse_prefix(parser)).or_else(|| self.direct_prefix(parser))
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        (self.double_quoted_names && ch == '"') || self.inner.is_delimited_identifier_start(ch)
    }

    delegate! {
        flags:
        supports_string_literal_backslash_escape, ignores_wildcard_escapes,
        supports_unicode_string_literal, supports_filter_during_aggregation,
        supports_window_clause_named_window_reference, supports_within_after_array_aggregation,
        supports_partition_by_after_order_by, supports_array_join_syntax,
        supports_alter_user_as_alter_role, supports_group_by_expr,
        supports_group_by_with_modifier, supports_left_associative_joins_without_parens,
        supports_outer_join_operator, supports_cross_join_constraint, supports_connect_by,
        supports_execute_immediate, supports_match_recognize, supports_in_empty_list,
        supports_in_unparenthesized_expr, supports_start_transaction_modifier,
        supports_end_transaction_modifier, supports_named_fn_args_with_eq_operator,
        supports_named_fn_args_with_colon_operator,
        supports_named_fn_args_with_assignment_operator,
        supports_named_fn_args_with_rarrow_operator, supports_named_fn_args_with_expr_name,
        supports_numeric_prefix, supports_numeric_literal_underscores,
        supports_window_function_null_treatment_arg, supports_dictionary_syntax,
        support_map_literal_syntax, supports_lambda_functions,
        supports_parenthesized_set_variables, supports_comma_separated_set_assignments,
        supports_update_order_by, supports_select_wildcard_except, convert_type_before_value,
        supports_triple_quoted_string, supports_trailing_commas, supports_limit_comma,
        supports_string_literal_concatenation,
        supports_string_literal_concatenation_with_newline,
        supports_projection_trailing_commas, supports_from_trailing_commas,
        supports_column_definition_trailing_commas, supports_object_name_double_dot_notation,
        supports_struct_literal, supports_empty_projections, supports_select_expr_star,
        supports_from_first_select, supports_from_first_insert, supports_pipe_operator,
        supports_user_host_grantee, supports_match_against, supports_select_wildcard_exclude,
        supports_select_exclude, supports_create_table_multi_schema_info_sources,
        supports_select_modifiers, describe_requires_table_keyword, allow_extract_custom,
        allow_extract_single_quotes, supports_extract_comma_syntax,
        supports_subquery_as_function_arg, supports_create_view_comment_syntax,
        supports_array_typedef_without_element_type, supports_parens_around_table_factor,
        supports_values_as_table_factor, supports_dollar_placeholder,
        supports_dollar_as_money_prefix, supports_create_index_with_clause,
        require_interval_qualifier, supports_explain_with_utility_options,
        supports_asc_desc_in_column_definition, supports_factorial_operator,
        supports_bitwise_shift_operators, supports_nested_comments,
        supports_multiline_comment_hints, supports_eq_alias_assignment, supports_try_convert,
        supports_bang_not_operator, supports_listen_notify, supports_exclude_constraint,
        supports_load_data, supports_load_extension, supports_top_before_distinct,
        supports_boolean_literals, supports_show_like_before_in, supports_comment_on,
        supports_create_table_select, supports_leading_comma_before_table_options,
        supports_partiql, supports_unpivot_expr, supports_constraint_keyword_without_name,
        supports_key_column_option, supports_table_sample_before_alias, supports_insert_set,
        supports_insert_table_function, supports_insert_table_query, supports_insert_format,
        supports_insert_table_alias, supports_set_stmt_without_operator,
        supports_table_versioning, supports_string_escape_constant, supports_table_hints,
        requires_single_line_comment_whitespace, supports_array_typedef_with_brackets,
        supports_geometric_types, supports_order_by_all, supports_order_by_using_operator,
        supports_set_names, supports_space_separated_column_options,
        supports_alter_column_type_using, supports_comma_separated_drop_column_list,
        supports_notnull_operator, supports_data_type_signed_suffix, supports_interval_options,
        supports_create_table_like_parenthesized, supports_semantic_view_table_factor,
        supports_quote_delimited_string, supports_comment_optimizer_hint,
        supports_double_ampersand_operator, supports_binary_kw_as_cast,
        supports_select_wildcard_replace, supports_select_wildcard_ilike,
        supports_select_wildcard_rename, supports_select_wildcard_with_alias,
        supports_optimize_table, supports_install, supports_detach, supports_prewhere,
        supports_with_fill, supports_limit_by, supports_interpolate, supports_settings,
        supports_select_format, supports_comma_separated_trim, supports_cte_without_as,
        supports_select_item_multi_column_alias, supports_xml_expressions,
        supports_aliased_function_args, supports_create_table_using,
        supports_long_type_as_bigint, supports_map_literal_with_angle_brackets;
        methods:
        fn dialect() -> TypeId;
        fn is_nested_delimited_identifier_start(ch: char) -> bool;
        fn peek_nested_delimited_identifier_quotes(
            chars: Peekable<Chars<'_>>
        ) -> Option<(char, Option<char>)>;
        fn identifier_quote_style(identifier: &str) -> Option<char>;
        fn is_identifier_start(ch: char) -> bool;
        fn is_identifier_part(ch: char) -> bool;
        fn is_custom_operator_part(ch: char) -> bool;
        fn parse_infix(
            parser: &mut Parser<'_>,
            expr: &Expr,
            precedence: u8
        ) -> Option<Result<Expr, ParserError>>;
        fn get_next_precedence(parser: &Parser<'_>) -> Option<Result<u8, ParserError>>;
        fn get_next_precedence_default(parser: &Parser<'_>) -> Result<u8, ParserError>;
        fn parse_statement(parser: &mut Parser<'_>) -> Option<Result<Statement, ParserError>>;
        fn parse_column_option(
            parser: &mut Parser<'_>
        ) -> Result<Option<Result<Option<ColumnOption>, ParserError>>, ParserError>;
        fn prec_value(prec: Precedence) -> u8;
        fn prec_unknown() -> u8;
        fn is_reserved_for_identifier(kw: Keyword) -> bool;
        fn get_reserved_keywords_for_select_item_operator() -> &[Keyword];
        fn get_reserved_grantees_types() -> &[GranteesType];
        fn is_column_alias(kw: &Keyword, parser: &mut Parser<'_>) -> bool;
        fn is_select_item_alias(explicit: bool, kw: &Keyword, parser: &mut Parser<'_>) -> bool;
        fn is_table_factor(kw: &Keyword, parser: &mut Parser<'_>) -> bool;
        fn is_table_alias(kw: &Keyword, parser: &mut Parser<'_>) -> bool;
        fn is_table_factor_alias(explicit: bool, kw: &Keyword, parser: &mut Parser<'_>) -> bool;
        fn is_identifier_generating_function_name(
            ident: &Ident,
            name_parts: &[ObjectNamePart]
        ) -> bool;
    }
}

/// Whether a plain name followed by these tokens is a bare identifier to
/// sqlparser, with no data type to try: not a function call (`(`), a
/// lambda (`->`), a string introducer (a string), an array type (`[`,
/// `ARRAY`), nor a qualified name the data type attempt would read on into
/// one of these. Lists only tokens known to end an identifier, so anything
/// unusual takes sqlparser's path.
fn only_identifier([second, third, fourth]: [&TokenWithSpan; 3]) -> bool {
    let is_array =
        |t: &TokenWithSpan| matches!(&t.token, Token::Word(w) if w.keyword == Keyword::ARRAY);
    match &second.token {
        Token::Comma
        | Token::RParen
        | Token::EOF
        | Token::SemiColon
        | Token::Eq
        | Token::Neq
        | Token::Lt
        | Token::Gt
        | Token::LtEq
        | Token::GtEq
        | Token::Plus
        | Token::Minus
        | Token::Mul
        | Token::Div
        | Token::Mod
        | Token::StringConcat
        | Token::DoubleColon => true,
        Token::Word(_) => !is_array(second) && third.token != Token::Arrow,
        // `orders.id`: the attempt reads the name `orders.id` and fails
        // unless a `(`, `[`, `ARRAY` or a longer name follows.
        Token::Period => {
            matches!(third.token, Token::Word(_))
                && !matches!(
                    fourth.token,
                    Token::Period | Token::LParen | Token::LBracket
                )
                && !is_array(fourth)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `sql` plainly in each dialect and wrapped, and panics unless
    /// both give the same statements or both fail, and `parse_sql` gives
    /// sqlparser's own result, error messages included.
    fn same_parse(sql: &str) {
        let pairs: [(&dyn Dialect, &dyn Dialect); 3] = [
            (&SQLiteDialect {}, dialect_for("sqlite")),
            (&PostgreSqlDialect {}, dialect_for("postgres")),
            (&GenericDialect {}, dialect_for("generic")),
        ];
        for (plain, wrapped) in pairs {
            let expected = Parser::parse_sql(plain, sql);
            let got = Parser::parse_sql(wrapped, sql);
            assert_eq!(
                got.is_ok(),
                expected.is_ok(),
                "{sql:?} in {plain:?}: {got:?}"
            );
            // Spans are not part of equality; compare them through the text.
            if let (Ok(got), Ok(expected)) = (&got, &expected) {
                assert_eq!(format!("{got:?}"), format!("{expected:?}"), "{sql:?}");
            }
            assert_eq!(crate::tokens::parse_sql(wrapped, sql), expected, "{sql:?}");
        }
    }

    #[test]
    fn wrapping_changes_no_parse() {
        let edges = [
            "select a, b.c, \"Q\".x, 1, 'it', -2 from t where a >= 1.5 and b <> 'x'",
            "select date '2020-01-01', timestamp '2020-01-01 00:00', interval '1' day",
            "select x '1', xml '<a/>', _utf8 'x', _x 'y', abc 'd' from t",
            "select a[1], a.b[1], a.b.c, a.b.c[2], t.*, a.f(x), f(x), f(x)[1] 'v'",
            "select a array, a.b array, a::int, a.b::text, a || b, a -> b, a b -> c",
            "select a b, a.b c, a.b.c d from t as u join v on u.id = v.id",
            "select (a), (a, b), a.\"b\", \"a\".b, sum(a.b) over (partition by c)",
            "select cast(a as int), case when a then b else c end, a is null, not a",
            "select a from t where a in (1, 2) and b between 1 and 2 and c like 'x'",
            "select a.b(1), a.b.c(2), point '(1,2)', circle '((0,0),1)'",
            "select 1 from t; select a from u;",
            "select a from",
            "select a.",
            "select a.1",
            "select a. b",
            "replace into t values (1)",
            "select a regexp b, a glob b, a match b from t",
        ];
        for sql in edges {
            same_parse(sql);
        }
        let models = crate::synthetic::project(100, 7)
            .into_iter()
            .filter(|(path, _)| path.extension().is_some_and(|e| e == "sql"));
        for (_, sql) in models {
            same_parse(&sql);
        }
    }

    /// MySQL's wrapping changes no parse but that of `"name"`, a name
    /// (as under `ANSI_QUOTES`) where plain MySQL reads a string.
    #[test]
    fn mysql_reads_double_quoted_names_and_parses_the_rest_the_same() {
        let mysql = dialect_for("mysql");
        let parsed = crate::tokens::parse_sql(mysql, "select \"a b\" from \"t\"").unwrap();
        assert_eq!(parsed[0].to_string(), "SELECT \"a b\" FROM \"t\"");
        let same = [
            "select a div 2, a mod 3, `b c` from t limit 1, 2",
            "select 'it\\'s', x regexp 'y' from t where a <=> b",
            "select a from",
        ];
        let models = crate::synthetic::project(100, 7)
            .into_iter()
            .filter(|(path, _)| path.extension().is_some_and(|e| e == "sql"))
            .map(|(_, sql)| sql);
        for sql in same.iter().map(|s| s.to_string()).chain(models) {
            let expected = Parser::parse_sql(&MySqlDialect {}, &sql);
            let got = crate::tokens::parse_sql(mysql, &sql);
            assert_eq!(got.is_ok(), expected.is_ok(), "{sql:?}: {got:?}");
            if let (Ok(got), Ok(expected)) = (&got, &expected) {
                assert_eq!(format!("{got:?}"), format!("{expected:?}"), "{sql:?}");
            }
        }
    }

    #[test]
    fn random_token_runs_parse_the_same() {
        const PIECES: &[&str] = &[
            "a", "b", "x", "_u", "\"q\"", "xml", "date", "interval", "array", "key", "as", "from",
            "select", "case", "when", "end", "not", ".", ",", "(", ")", "[", "]", "::", "->", "=",
            "+", "*", "||", "'s'", "1", "2.5", ";", " ", "int", "day",
        ];
        for run in crate::synthetic::piece_runs(PIECES, 8, 0x2545_f491_4f6c_dd1d).take(10_000) {
            same_parse(&format!("select {}", run.join(" ")));
        }
    }

    #[test]
    fn every_keyword_parses_the_same_before_every_accepted_token() {
        let tails = [
            "",
            ",1",
            ")",
            ";",
            "=1",
            "<>1",
            "<1",
            ">1",
            "<=1",
            ">=1",
            "+1",
            "-1",
            "*1",
            "/1",
            "%1",
            "||1",
            "::int",
            " x",
            " as x",
            " from t",
            " when 1",
            " end",
            " and 1",
            " then 1",
            ".x",
            ".x,1",
            ".x)",
            ".x y",
            " 'v'",
            "[1]",
            " array",
            "(1)",
            "()",
            "(x, 'a')",
            "(x)[1] 'v'",
            "(1) array",
            "(a.b)",
            "(*)",
            "(distinct x)",
            "(x) over (partition by y)",
            "(+)",
            "(1)::int",
            "(x) 'v'",
            "(x) filter (where y)",
            "(x order by y)",
            "(x) within group (order by y)",
            "(1, 2",
        ];
        for keyword in ALL_KEYWORDS {
            for tail in tails {
                same_parse(&format!("select {keyword}{tail}"));
            }
            same_parse(&format!("select f({keyword}), ({keyword}) from t"));
        }
    }

    #[test]
    fn names_and_literals_are_parsed_directly() {
        let dialect = FastPrefix::new(GenericDialect {});
        let direct = |sql: &str| {
            let mut parser = Parser::new(&dialect).try_with_sql(sql).unwrap();
            (dialect.direct_prefix(&mut parser)).map(|expr| expr.unwrap().to_string())
        };
        assert_eq!(direct("amount + 1").as_deref(), Some("amount"));
        assert_eq!(direct("orders.id = 1").as_deref(), Some("orders"));
        assert_eq!(direct("\"Quoted\" as q").as_deref(), Some("\"Quoted\""));
        assert_eq!(direct("id, key").as_deref(), Some("id"));
        assert_eq!(direct("key)").as_deref(), Some("key"));
        assert_eq!(direct("42,").as_deref(), Some("42"));
        assert_eq!(direct("'large' end").as_deref(), Some("'large'"));
        assert_eq!(direct("f(x)").as_deref(), Some("f(x)"));
        assert_eq!(
            direct("sum(a.b) over ()").as_deref(),
            Some("sum(a.b) OVER ()")
        );
        // Left to sqlparser: types, expression keywords, subscripts, and
        // calls that could read as an array type.
        let left = [
            "f(x)[1]",
            "f(1) array",
            "date(x)",
            "cast(x as int)",
            "date '2020-01-01'",
            "date,",
            "int,",
            "case when",
            "not x",
            "current_date,",
            "a[1]",
            "a.b(1)",
            "a.b.c",
            "x 'y'",
        ];
        for sql in left {
            assert_eq!(direct(sql), None, "{sql}");
        }
    }
}
