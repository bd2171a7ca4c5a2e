//! A SQL injection detector: a small SQL tokenizer plus structural checks.
//!
//! Written for Palisade (in the spirit of libinjection, not derived from
//! it). A value is an injection when, read as the continuation of a SQL
//! statement, it *changes the statement's structure*: it closes a string or
//! a parenthesis and goes on with SQL, adds a boolean clause with a
//! comparison, appends `UNION SELECT` or a stacked query, or calls the
//! functions that blind and error-based injection rely on. Plain text with
//! apostrophes, quotes, `and`/`or`, numbers and dashes does not.
//!
//! The value is read in three contexts, as libinjection does: as it is, and
//! as if it started inside a `'...'` or `"..."` literal (the text up to the
//! first quote of that kind is then the literal's content).

// One arm per keyword reads better than guards folded into the match.
#![allow(clippy::collapsible_match)]

/// Tokens, with words already classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum T {
    Str,
    Num,
    Word,
    /// `and`, `or`, `xor`, `&&`, `||`.
    Logic,
    /// `=`, `<`, `>`, `<>`, `!=`, `like`, `rlike`, `regexp`, `in`, `is`,
    /// `between`, `sounds`.
    Cmp,
    /// Arithmetic and bit operators.
    Op,
    /// A function name often used in attacks (only meaningful before `(`).
    Danger,
    /// Any other known SQL function name.
    Func,
    Kw(K),
    /// `@var` / `@@var`.
    Var,
    SysVar,
    LParen,
    RParen,
    Comma,
    Semi,
    Comment,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum K {
    Union,
    Select,
    From,
    Where,
    Having,
    Order,
    Group,
    By,
    Limit,
    Insert,
    Into,
    Update,
    Set,
    Delete,
    Drop,
    Table,
    Exec,
    Declare,
    Waitfor,
    Case,
    When,
    Then,
    All,
    Distinct,
    Null,
    Truthy,
    Outfile,
    Procedure,
    As,
    Begin,
    Shutdown,
    Create,
    Alter,
    Truncate,
    Schema,
}

fn classify(w: &[u8]) -> T {
    // The last dotted segment decides for names like `dbms_lock.sleep`.
    let last = w
        .iter()
        .rposition(|&b| b == b'.')
        .map_or(w, |p| &w[p + 1..]);
    match w {
        b"and" | b"or" | b"xor" => return T::Logic,
        b"like" | b"rlike" | b"regexp" | b"in" | b"is" | b"between" | b"sounds" | b"glob"
        | b"div" | b"mod" => return T::Cmp,
        b"union" => return T::Kw(K::Union),
        b"select" => return T::Kw(K::Select),
        b"from" => return T::Kw(K::From),
        b"where" => return T::Kw(K::Where),
        b"having" => return T::Kw(K::Having),
        b"order" => return T::Kw(K::Order),
        b"group" => return T::Kw(K::Group),
        b"by" => return T::Kw(K::By),
        b"limit" | b"offset" | b"top" => return T::Kw(K::Limit),
        b"insert" | b"replace" => return T::Kw(K::Insert),
        b"into" => return T::Kw(K::Into),
        b"update" => return T::Kw(K::Update),
        b"set" => return T::Kw(K::Set),
        b"delete" => return T::Kw(K::Delete),
        b"drop" => return T::Kw(K::Drop),
        b"table" | b"database" | b"column" => return T::Kw(K::Table),
        b"exec" | b"execute" => return T::Kw(K::Exec),
        b"declare" => return T::Kw(K::Declare),
        b"waitfor" => return T::Kw(K::Waitfor),
        b"case" => return T::Kw(K::Case),
        b"when" => return T::Kw(K::When),
        b"then" => return T::Kw(K::Then),
        b"all" => return T::Kw(K::All),
        b"distinct" | b"distinctrow" => return T::Kw(K::Distinct),
        b"null" => return T::Kw(K::Null),
        b"true" | b"false" => return T::Kw(K::Truthy),
        b"outfile" | b"dumpfile" => return T::Kw(K::Outfile),
        b"procedure" => return T::Kw(K::Procedure),
        b"as" => return T::Kw(K::As),
        b"begin" => return T::Kw(K::Begin),
        b"shutdown" => return T::Kw(K::Shutdown),
        b"create" => return T::Kw(K::Create),
        b"alter" => return T::Kw(K::Alter),
        b"truncate" => return T::Kw(K::Truncate),
        _ => {}
    }
    if w.starts_with(b"information_schema")
        || w.starts_with(b"mysql.")
        || w.starts_with(b"sys.")
        || w.starts_with(b"pg_catalog")
        || w.starts_with(b"master..")
        || matches!(
            last,
            b"sysobjects"
                | b"syscolumns"
                | b"sysusers"
                | b"sqlite_master"
                | b"all_tables"
                | b"all_users"
                | b"user_tables"
                | b"pg_shadow"
                | b"pg_user"
                | b"msysaccessobjects"
                | b"msysobjects"
        )
        || w.starts_with(b"rdb$")
    {
        return T::Kw(K::Schema);
    }
    match last {
        b"sleep"
        | b"benchmark"
        | b"pg_sleep"
        | b"extractvalue"
        | b"updatexml"
        | b"load_file"
        | b"randomblob"
        | b"make_set"
        | b"elt"
        | b"get_host_address"
        | b"receive_message"
        | b"xp_cmdshell"
        | b"sys_eval"
        | b"sys_exec"
        | b"regexp_substring"
        | b"group_concat"
        | b"string_agg"
        | b"generate_series"
        | b"xmltype"
        | b"dbms_xmlgen"
        | b"sn"
        | b"iif"
        | b"if"
        | b"ifnull"
        | b"nullif"
        | b"isnull"
        | b"coalesce"
        | b"exp"
        | b"geometrycollection"
        | b"polygon"
        | b"multipoint"
        | b"linestring"
        | b"json_keys"
        | b"gtid_subset"
        | b"name_const"
        | b"xmlelement"
        | b"db_name"
        | b"user_name"
        | b"is_srvrolemember"
        | b"has_dbaccess"
        | b"current_user"
        | b"session_user"
        | b"system_user"
        | b"version"
        | b"database"
        | b"schema"
        | b"user"
        | b"uuid"
        | b"@@version"
        | b"row_count"
        | b"found_rows"
        | b"last_insert_id"
        | b"char_length"
        | b"substring_index"
        | b"pg_read_file"
        | b"lo_import"
        | b"copy"
        | b"openrowset"
        | b"opendatasource"
        | b"unhex"
        | b"hex"
        | b"ascii"
        | b"ord"
        | b"char"
        | b"chr"
        | b"nchar"
        | b"concat"
        | b"concat_ws"
        | b"substring"
        | b"substr"
        | b"mid"
        | b"cast"
        | b"convert"
        | b"md5"
        | b"sha1"
        | b"sha2"
        | b"rand"
        | b"floor"
        | b"count"
        | b"repeat"
        | b"length"
        | b"len"
        | b"instr"
        | b"locate"
        | b"position"
        | b"lpad"
        | b"rpad"
        | b"reverse"
        | b"strcmp"
        | b"soundex"
        | b"bin"
        | b"oct"
        | b"conv"
        | b"utl_http"
        | b"request"
        | b"dbms_pipe"
        | b"sysdate"
        | b"now"
        | b"getdate"
        | b"waitfor" => T::Danger,
        b"lower" | b"upper" | b"trim" | b"left" | b"right" | b"round" | b"abs" | b"sum"
        | b"avg" | b"min" | b"max" | b"space" | b"lcase" | b"ucase" | b"quote" | b"date"
        | b"time" | b"format" => T::Func,
        _ => T::Word,
    }
}

const MAX_TOKENS: usize = 4096;

/// The bytes a word (identifier, keyword, number) is made of, one table
/// look-up instead of four range tests per byte.
static WORD_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'.') || b >= 0x80;
        i += 1;
    }
    t
};

#[inline(always)]
fn is_word_byte(b: u8) -> bool {
    WORD_BYTE[b as usize]
}

fn tokenize(s: &[u8], out: &mut Vec<T>) {
    out.clear();
    let mut i = 0;
    let n = s.len();
    while i < n && out.len() < MAX_TOKENS {
        let b = s[i];
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0xa0 => i += 1,
            b'\'' | b'"' | b'`' => {
                let q = b;
                let mut j = i + 1;
                while j < n {
                    if s[j] == b'\\' {
                        j += 2;
                        continue;
                    }
                    if s[j] == q {
                        if j + 1 < n && s[j + 1] == q {
                            j += 2;
                            continue;
                        }
                        break;
                    }
                    j += 1;
                }
                out.push(if q == b'`' { T::Word } else { T::Str });
                i = j + 1;
            }
            b'-' if s.get(i + 1) == Some(&b'-') => {
                out.push(T::Comment);
                i = memchr::memchr(b'\n', &s[i..]).map_or(n, |e| i + e + 1);
            }
            b'#' => {
                out.push(T::Comment);
                i = memchr::memchr(b'\n', &s[i..]).map_or(n, |e| i + e + 1);
            }
            b'/' if s.get(i + 1) == Some(&b'*') => {
                if s.get(i + 2) == Some(&b'!') {
                    // MySQL executable comment: its content is SQL.
                    i += 3;
                    while i < n && s[i].is_ascii_digit() {
                        i += 1;
                    }
                    continue;
                }
                out.push(T::Comment);
                i = memchr::memmem::find(&s[i + 2..], b"*/").map_or(n, |e| i + 2 + e + 2);
            }
            b'*' if s.get(i + 1) == Some(&b'/') => i += 2,
            b'(' => {
                out.push(T::LParen);
                i += 1;
            }
            b')' => {
                out.push(T::RParen);
                i += 1;
            }
            b',' => {
                out.push(T::Comma);
                i += 1;
            }
            b';' => {
                out.push(T::Semi);
                i += 1;
            }
            b'=' | b'<' | b'>' | b'!' => {
                let mut j = i + 1;
                while j < n && matches!(s[j], b'=' | b'<' | b'>' | b'!') && j - i < 3 {
                    j += 1;
                }
                out.push(if &s[i..j] == b"!" { T::Op } else { T::Cmp });
                i = j;
            }
            b'|' | b'&' => {
                if s.get(i + 1) == Some(&b) {
                    out.push(T::Logic);
                    i += 2;
                } else {
                    out.push(T::Op);
                    i += 1;
                }
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'~' => {
                out.push(T::Op);
                i += 1;
            }
            b'@' => {
                let sys = s.get(i + 1) == Some(&b'@');
                let mut j = i + if sys { 2 } else { 1 };
                while j < n && is_word_byte(s[j]) {
                    j += 1;
                }
                out.push(if sys { T::SysVar } else { T::Var });
                i = j;
            }
            _ if is_word_byte(b) => {
                let mut j = i;
                while j < n && is_word_byte(s[j]) {
                    j += 1;
                }
                let w = &s[i..j];
                let numeric = w[0].is_ascii_digit() || (w[0] == b'.' && w.len() > 1);
                let tok = if numeric {
                    let ok = if w.starts_with(b"0x") {
                        w[2..].iter().all(|c| c.is_ascii_hexdigit())
                    } else if w.starts_with(b"0b") {
                        w[2..].iter().all(|c| matches!(c, b'0' | b'1'))
                    } else {
                        let mut seen_e = false;
                        w.iter().all(|&c| {
                            if c == b'e' && !seen_e {
                                seen_e = true;
                                true
                            } else {
                                c.is_ascii_digit() || c == b'.'
                            }
                        })
                    };
                    if ok {
                        T::Num
                    } else {
                        T::Word
                    }
                } else {
                    classify(w)
                };
                out.push(tok);
                i = j;
            }
            _ => {
                out.push(T::Other);
                i += 1;
            }
        }
    }
}

fn is_value(t: T) -> bool {
    matches!(
        t,
        T::Str | T::Num | T::Word | T::Var | T::SysVar | T::Kw(K::Null) | T::Kw(K::Truthy)
    )
}

fn is_fn(t: T) -> bool {
    matches!(t, T::Danger | T::Func | T::Word | T::Kw(K::Schema))
}

/// Length of an operand starting at `i`: a value, or `name(`...`)`, or a
/// parenthesised expression start. Returns the index after it.
fn operand(t: &[T], mut i: usize) -> Option<usize> {
    while t.get(i) == Some(&T::LParen) {
        i += 1;
    }
    while t.get(i) == Some(&T::Op) {
        // Unary minus / not.
        i += 1;
    }
    let tok = *t.get(i)?;
    if is_fn(tok) && t.get(i + 1) == Some(&T::LParen) {
        return Some(i + 2);
    }
    if matches!(tok, T::Kw(K::Select)) {
        return Some(i + 1);
    }
    is_value(tok).then_some(i + 1)
}

/// `x <cmp> y` at `i`.
fn comparison(t: &[T], i: usize) -> bool {
    let Some(j) = operand(t, i) else { return false };
    if t.get(j) != Some(&T::Cmp) {
        // `x between a and b`, `x like y` already Cmp; `1=1` needs Cmp.
        return false;
    }
    // `x = (select ...)`, `x in (...)`, `x = y`, `x is null`.
    matches!(
        t.get(j + 1),
        Some(T::LParen | T::Str | T::Num | T::Word | T::Var | T::SysVar | T::Danger | T::Func)
            | Some(T::Kw(K::Null | K::Truthy | K::Select))
            | Some(T::Op)
    )
}

fn skip_comments(t: &[T], mut i: usize) -> usize {
    while t.get(i) == Some(&T::Comment) {
        i += 1;
    }
    i
}

/// Checks that hold wherever they appear in the token stream.
fn anywhere(t: &[T]) -> bool {
    let n = t.len();
    let structural = t.iter().any(|&x| {
        matches!(
            x,
            T::Str
                | T::LParen
                | T::RParen
                | T::Comma
                | T::Semi
                | T::Comment
                | T::Cmp
                | T::Op
                | T::SysVar
        )
    });
    for i in 0..n {
        let next = |k: usize| t.get(skip_comments(t, i + k)).copied();
        match t[i] {
            T::Kw(K::Union) => {
                let mut j = skip_comments(t, i + 1);
                while matches!(
                    t.get(j),
                    Some(T::Kw(K::All | K::Distinct) | T::LParen | T::Comment)
                ) {
                    j += 1;
                }
                if t.get(j) == Some(&T::Kw(K::Select)) {
                    return true;
                }
            }
            T::Semi => {
                if matches!(
                    next(1),
                    Some(
                        T::Kw(
                            K::Select
                                | K::Insert
                                | K::Update
                                | K::Delete
                                | K::Drop
                                | K::Exec
                                | K::Declare
                                | K::Waitfor
                                | K::Shutdown
                                | K::Create
                                | K::Alter
                                | K::Truncate
                                | K::Begin
                                | K::Set
                        ) | T::Danger
                    )
                ) && (i + 2 < n || matches!(next(1), Some(T::Kw(K::Shutdown))))
                {
                    return true;
                }
            }
            T::Danger => {
                if next(1) == Some(T::LParen) && structural {
                    // A call of an attack-typical function, with arguments
                    // or closed: `sleep(5)`, `benchmark(`, `char(65)||`.
                    return true;
                }
            }
            T::Kw(K::Waitfor) => {
                if matches!(next(1), Some(T::Word | T::Str)) {
                    return true;
                }
            }
            T::Kw(K::Select) => {
                // `select ... from`, `(select`, `select @@x`, `select 1,2`.
                if i > 0 && t[i - 1] == T::LParen && operand(t, i + 1).is_some() {
                    return true;
                }
                let end = n.min(i + 12);
                if t[i + 1..end].contains(&T::Kw(K::From)) && structural {
                    return true;
                }
                if matches!(next(1), Some(T::SysVar | T::Danger)) {
                    return true;
                }
                if next(1) == Some(T::Num) && next(2) == Some(T::Comma) {
                    return true;
                }
            }
            T::Kw(K::Where | K::Having) => {
                if comparison(t, i + 1) && structural {
                    return true;
                }
            }
            T::Kw(K::Order | K::Group) => {
                if next(1) == Some(T::Kw(K::By))
                    && matches!(next(2), Some(T::Num | T::Danger | T::LParen))
                    && structural
                {
                    return true;
                }
            }
            T::Kw(K::Insert) => {
                if next(1) == Some(T::Kw(K::Into)) && structural {
                    return true;
                }
            }
            T::Kw(K::Delete) => {
                if next(1) == Some(T::Kw(K::From)) && structural {
                    return true;
                }
            }
            T::Kw(K::Drop | K::Truncate | K::Create | K::Alter) => {
                if next(1) == Some(T::Kw(K::Table)) && structural {
                    return true;
                }
            }
            T::Kw(K::Into) => {
                if next(1) == Some(T::Kw(K::Outfile)) {
                    return true;
                }
            }
            T::Kw(K::Exec) => {
                if matches!(next(1), Some(T::Word | T::Danger | T::LParen)) && structural {
                    return true;
                }
            }
            T::Kw(K::Case) => {
                if next(1) == Some(T::Kw(K::When))
                    || t[i + 1..n.min(i + 10)].contains(&T::Kw(K::When))
                        && t[i + 1..n.min(i + 14)].contains(&T::Kw(K::Then))
                {
                    return true;
                }
            }
            T::Kw(K::Procedure) => {
                if matches!(next(1), Some(T::Word | T::Danger)) && next(2) == Some(T::LParen) {
                    return true;
                }
            }
            T::SysVar => {
                return true;
            }
            T::Kw(K::As) => {
                // `1 as "alias" from t`: a select list.
                if matches!(next(1), Some(T::Str | T::Word))
                    && next(2) == Some(T::Kw(K::From))
                    && structural
                {
                    return true;
                }
            }
            T::Kw(K::Schema) => {
                if i > 0 && matches!(t[i - 1], T::Kw(K::From) | T::Comma) {
                    return true;
                }
            }
            T::Logic => {
                // `... ) or 1=1`, `1 and sleep(5)`, `x' or 'a'='a`.
                let prev_ok = i == 0
                    || matches!(
                        t[i - 1],
                        T::Num
                            | T::Str
                            | T::RParen
                            | T::Var
                            | T::SysVar
                            | T::Kw(K::Null | K::Truthy)
                    );
                if prev_ok {
                    let j = skip_comments(t, i + 1);
                    if comparison(t, j) {
                        return true;
                    }
                    let mut k = j;
                    while t.get(k) == Some(&T::LParen) {
                        k += 1;
                    }
                    if matches!(t.get(k), Some(T::Danger)) && t.get(k + 1) == Some(&T::LParen) {
                        return true;
                    }
                    if matches!(t.get(k), Some(T::Kw(K::Select))) {
                        return true;
                    }
                    // `1 or 1--`, `x' or true#`.
                    if let Some(e) = operand(t, j) {
                        if t.get(e) == Some(&T::Comment) && i > 0 {
                            return true;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    false
}

/// Checks for the start of a value read after a closing quote.
fn after_quote(t: &[T]) -> bool {
    let mut i = 0;
    while t.get(i) == Some(&T::RParen) {
        i += 1;
    }
    let closed_paren = i > 0;
    match t.get(i) {
        // `admin'--`, `x')#`, `x' /*`.
        Some(T::Comment) => true,
        // `x';` ends the statement: a probe, or a stacked query follows.
        Some(T::Semi) => true,
        Some(T::Logic) => {
            let j = skip_comments(t, i + 1);
            // `' or 1=1`, `' or 'x'='x`, `' or 1--`, `' or true`.
            comparison(t, j)
                || operand(t, j)
                    .is_some_and(|e| e >= t.len() || matches!(t[e], T::Comment | T::Semi))
                || matches!(t.get(j), Some(T::Danger | T::Kw(K::Select)))
                || t.get(j) == Some(&T::LParen)
        }
        Some(T::Cmp) => matches!(
            t.get(i + 1),
            Some(T::Str | T::Num | T::LParen | T::Danger | T::Func | T::Kw(K::Select))
        ),
        Some(T::Op) => {
            // `'+'x`, `'||(select`, `'-sleep(5)-'`.
            matches!(t.get(i + 1), Some(T::Str))
                && matches!(
                    t.get(i + 2),
                    None | Some(T::Op | T::Logic | T::Comment | T::Cmp)
                )
                || matches!(t.get(i + 1), Some(T::Danger | T::LParen))
        }
        Some(T::Kw(
            K::Union
            | K::Select
            | K::Order
            | K::Group
            | K::Having
            | K::Where
            | K::Limit
            | K::Into
            | K::Procedure
            | K::As,
        )) => t.len() > i + 1 || closed_paren,
        Some(T::Comma) => closed_paren && t.len() > i + 1,
        _ => false,
    }
}

/// Checks for the start of an unquoted value: a number or name, then a
/// closing parenthesis, then SQL.
fn unquoted_start(t: &[T]) -> bool {
    let mut i = 0;
    while matches!(t.get(i), Some(T::Op)) {
        i += 1;
    }
    if !matches!(t.get(i), Some(T::Num | T::Word)) {
        return false;
    }
    let mut j = i + 1;
    let parens_start = j;
    while t.get(j) == Some(&T::RParen) {
        j += 1;
    }
    if j == parens_start {
        return false;
    }
    matches!(
        t.get(j),
        Some(
            T::Logic
                | T::Comment
                | T::Semi
                | T::Kw(
                    K::Union
                        | K::Select
                        | K::Order
                        | K::Group
                        | K::Where
                        | K::Having
                        | K::As
                        | K::Limit
                        | K::Into
                )
        )
    ) && (t.len() > j + 1 || t.get(j) == Some(&T::Comment))
}

/// Scratch space, reused across calls in one inspection.
#[derive(Default)]
pub struct Scratch {
    tokens: Vec<T>,
}

impl Scratch {
    /// Gives the token buffer back when it grew past `bytes`.
    pub(crate) fn trim(&mut self, bytes: usize) {
        if self.tokens.capacity() * std::mem::size_of::<T>() > bytes {
            self.tokens = Vec::new();
        }
    }
}

/// Is `s` (a normalised, lower-case value) a SQL injection?
pub fn is_sqli(s: &[u8], scratch: &mut Scratch) -> bool {
    let t = &mut scratch.tokens;
    tokenize(s, t);
    if anywhere(t) || unquoted_start(t) {
        return true;
    }
    for q in [b'\'', b'"'] {
        if let Some(p) = memchr::memchr(q, s) {
            let rest = &s[p + 1..];
            tokenize(rest, t);
            if after_quote(t) || anywhere(t) {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqli(s: &str) -> bool {
        is_sqli(s.as_bytes(), &mut Scratch::default())
    }

    #[test]
    fn word_bytes_are_letters_digits_underscore_dollar_dot_and_non_ascii() {
        let spelled: Vec<u8> = (b'a'..=b'z')
            .chain(b'A'..=b'Z')
            .chain(b'0'..=b'9')
            .chain([b'_', b'$', b'.'])
            .chain(0x80..=0xff)
            .collect();
        for b in 0..=255u8 {
            assert_eq!(is_word_byte(b), spelled.contains(&b), "byte {b:#04x}");
        }
    }

    #[test]
    fn dotted_names_are_classified_by_their_last_segment() {
        assert_eq!(classify(b"sleep"), T::Danger);
        assert_eq!(classify(b"dbms_lock.sleep"), T::Danger);
        assert_eq!(classify(b"a.b.benchmark"), T::Danger);
        assert_eq!(classify(b"sleep."), T::Word);
        assert_eq!(classify(b"shop.example"), T::Word);
    }

    #[test]
    fn attacks() {
        for a in [
            "1' or '1'='1",
            "' or 1=1--",
            "admin'--",
            "1 union all select null,null--",
            "x') union select password from users#",
            "1; drop table users",
            "1 and sleep(5)",
            "1) or (select 1 from dual)=1",
            "-5 or 3=3",
            "1' and extractvalue(1,concat(0x7e,version()))--",
            "1 waitfor delay '0:0:5'",
            "1 order by 7--",
            "' having 1=1--",
            "select @@version",
            "1)) as x where 12=12",
            "1' /*!50000union*/ select 1",
            "\" or \"\"=\"",
            "1 and (select count(*) from information_schema.tables)>0",
        ] {
            assert!(sqli(a), "missed {a}");
        }
    }

    #[test]
    fn benign() {
        for b in [
            "O'Reilly",
            "red shoes \"size 42\"",
            "rock and roll",
            "black or white",
            "it's a 'great' product -- really",
            "Calle 10 #20-30",
            "5 or 6 pieces",
            "L'Oréal crème",
            "tom & jerry",
            "select your size from the list",
            "union jack t-shirt",
            "1/2 price - today only!",
            "john.doe@example.com",
            "c/ caridad s/n",
            "d'or",
            "2 x 3 = 6",
            "Where is my order?",
            "order by phone",
        ] {
            assert!(!sqli(&b.to_ascii_lowercase()), "false positive {b}");
        }
    }
}
