//! Fitting shaped replies into Telegram messages: splitting at the 4096-character limit without
//! breaking HTML, and the plain-text form used when Telegram rejects the HTML.

/// Telegram's limit on a message's text, counted after entity parsing, in UTF-16 code units.
pub const MESSAGE_LIMIT: usize = 4096;

/// Splits Telegram-HTML `html` into chunks whose visible text (tags removed, each entity counted
/// as the one character it stands for, length in UTF-16 code units) is at most `limit`, each chunk
/// itself balanced Telegram HTML: tags open at a split point are closed at the end of the chunk
/// and re-opened, with the same attributes, at the start of the next.
///
/// Prefers to split after a newline, then after whitespace, then anywhere, but never inside a tag,
/// an entity or a character. Whitespace at the split is trimmed; chunks are never empty. Malformed
/// input never panics: stray close tags are dropped, crossed tags re-nested, unclosed ones closed.
/// A `limit` below 2 cannot hold an astral character (an emoji); such a character gets a chunk of
/// its own, over the limit.
pub fn split_html(html: &str, limit: usize) -> Vec<String> {
    split_tokens(&tokenize(html), limit)
}

/// The same as [`split_html`] for plain text (no markup): chunks of at most `limit` UTF-16 code
/// units, with the same split preferences.
pub fn split_plain(text: &str, limit: usize) -> Vec<String> {
    let tokens: Vec<Token> = text
        .char_indices()
        .map(|(at, ch)| Token {
            raw: &text[at..at + ch.len_utf8()],
            kind: Kind::Text(ch),
        })
        .collect();
    split_tokens(&tokens, limit)
}

/// What the user would see of `html`: tags removed, `&lt; &gt; &amp; &quot;` and numeric
/// references decoded, line breaks kept. Anything malformed (a lone `<` or `&`) stays as is.
pub fn html_to_plain(html: &str) -> String {
    tokenize(html).iter().filter_map(Token::visible).collect()
}

/// Visible length of Telegram-HTML in UTF-16 code units (as Telegram counts the 4096 limit).
pub fn visible_len(html: &str) -> usize {
    tokenize(html)
        .iter()
        .filter_map(Token::visible)
        .map(char::len_utf16)
        .sum()
}

/// One indivisible piece of the input, with the exact source text it came from.
#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    raw: &'a str,
    kind: Kind<'a>,
}

#[derive(Debug, Clone, Copy)]
enum Kind<'a> {
    /// One visible character: a literal one, or an entity (`raw` = `&lt;`) standing for it.
    Text(char),
    /// An opening tag and its name, e.g. `<a href="…">` and `a`.
    Open(&'a str),
    /// A closing tag's name.
    Close(&'a str),
    /// A self-closing tag (`<br/>`): nothing to balance.
    Void,
}

impl Token<'_> {
    fn visible(&self) -> Option<char> {
        match self.kind {
            Kind::Text(ch) => Some(ch),
            _ => None,
        }
    }

    /// Visible and not whitespace: what a chunk must contain and may start or end with.
    fn is_content(&self) -> bool {
        self.visible().is_some_and(|ch| !ch.is_whitespace())
    }
}

fn tokenize(html: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut rest = html;
    while let Some(ch) = rest.chars().next() {
        let token = match ch {
            '<' => parse_tag(rest),
            '&' => parse_entity(rest),
            _ => None,
        }
        .unwrap_or(Token {
            raw: &rest[..ch.len_utf8()],
            kind: Kind::Text(ch),
        });
        rest = &rest[token.raw.len()..];
        tokens.push(token);
    }
    tokens
}

/// `s` starts with `<`. A tag is `<name…>` or `</name…>` with no `<` before its `>`; anything else
/// is a literal `<`, so that malformed input never swallows the text after it.
fn parse_tag(s: &str) -> Option<Token<'_>> {
    let end = s[1..].find(['<', '>'])? + 1;
    if s.as_bytes()[end] != b'>' {
        return None;
    }
    let raw = &s[..=end];
    let inner = &raw[1..];
    let (closing, body) = match inner.strip_prefix('/') {
        Some(body) => (true, body),
        None => (false, inner),
    };
    let name_len = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .unwrap_or(body.len());
    let name = &body[..name_len];
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let kind = if closing {
        Kind::Close(name)
    } else if raw.ends_with("/>") {
        Kind::Void
    } else {
        Kind::Open(name)
    };
    Some(Token { raw, kind })
}

/// The longest entity Telegram accepts is `&#x10FFFF;`; looking no further for the `;` keeps
/// tokenizing linear on text full of lone `&`.
const MAX_ENTITY_LEN: usize = 12;

/// `s` starts with `&`. Telegram knows only these named entities plus numeric ones; anything else
/// is a literal `&`.
fn parse_entity(s: &str) -> Option<Token<'_>> {
    let end = s.bytes().take(MAX_ENTITY_LEN).position(|b| b == b';')?;
    let raw = &s[..=end];
    let ch = match &raw[1..end] {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        other => decode_numeric(other.strip_prefix('#')?)?,
    };
    Some(Token {
        raw,
        kind: Kind::Text(ch),
    })
}

/// `39` or `x27` (the part after `&#`) to the character it names.
fn decode_numeric(number: &str) -> Option<char> {
    let (digits, radix) = match number.strip_prefix(['x', 'X']) {
        Some(hex) => (hex, 16),
        None => (number, 10),
    };
    // `from_str_radix` alone would also accept a sign.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    char::from_u32(u32::from_str_radix(digits, radix).ok()?)
}

fn split_tokens(tokens: &[Token<'_>], limit: usize) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut open = Vec::new();
    let mut start = 0;
    while start < tokens.len() {
        let end = start + cut_point(&tokens[start..], limit);
        chunks.extend(render_chunk(&tokens[start..end], &mut open));
        start = end;
    }
    chunks
}

/// How many of `tokens` make the next chunk: as many as fit in `limit`, cut at the last newline if
/// there is one, else at the last whitespace, else after the last character that fits. Whitespace
/// at either end of a chunk is trimmed, so it only counts once content follows it.
fn cut_point(tokens: &[Token<'_>], limit: usize) -> usize {
    let mut width = 0;
    let mut pending_space = 0;
    // Each candidate is the end of the content before it; tags after it go to the next chunk.
    let mut after_content = None;
    let mut at_space = None;
    let mut at_newline = None;
    for (i, token) in tokens.iter().enumerate() {
        let Kind::Text(ch) = token.kind else { continue };
        if ch.is_whitespace() {
            if after_content.is_some() {
                pending_space += ch.len_utf16();
                at_space = after_content;
                if ch == '\n' {
                    at_newline = after_content;
                }
            }
            continue;
        }
        let grown = width + pending_space + ch.len_utf16();
        if grown > limit {
            // A first character wider than the limit still has to go somewhere.
            return at_newline.or(at_space).or(after_content).unwrap_or(i + 1);
        }
        width = grown;
        pending_space = 0;
        after_content = Some(i + 1);
    }
    tokens.len()
}

/// A tag open at the current point; `emitted` once it has been written into the current chunk.
struct OpenTag<'a> {
    raw: &'a str,
    name: &'a str,
    emitted: bool,
}

/// Renders one chunk, trimming whitespace at both ends; `None` if it has no content. `open` holds
/// the tags open at the chunk's start and is left holding those open at its end.
///
/// Tags are written lazily, just before the first thing inside them: re-opening the tags carried
/// over from the previous chunk is then the same thing as opening them in the first place, and a
/// chunk never begins or ends with an empty element (Telegram dislikes those).
fn render_chunk<'a>(tokens: &[Token<'a>], open: &mut Vec<OpenTag<'a>>) -> Option<String> {
    let first = tokens.iter().position(Token::is_content)?;
    let last = tokens.iter().rposition(Token::is_content)?;
    let mut out = String::new();
    for (i, token) in tokens.iter().enumerate() {
        match token.kind {
            Kind::Text(_) if !(first..=last).contains(&i) => {}
            Kind::Text(_) | Kind::Void => {
                emit_pending(open, &mut out);
                out.push_str(token.raw);
            }
            Kind::Open(name) => open.push(OpenTag {
                raw: token.raw,
                name,
                emitted: false,
            }),
            Kind::Close(name) => close(open, name, &mut out),
        }
    }
    close_emitted(open, &mut out);
    Some(out)
}

fn emit_pending(open: &mut [OpenTag<'_>], out: &mut String) {
    for tag in open.iter_mut().filter(|tag| !tag.emitted) {
        out.push_str(tag.raw);
        tag.emitted = true;
    }
}

/// Closes the innermost open tag called `name`. Tags opened inside it and still open (malformed
/// input) are closed first and re-opened lazily after, so the output stays properly nested; a
/// close tag with nothing to close is dropped.
fn close(open: &mut Vec<OpenTag<'_>>, name: &str, out: &mut String) {
    let Some(at) = open
        .iter()
        .rposition(|tag| tag.name.eq_ignore_ascii_case(name))
    else {
        return;
    };
    close_emitted(&mut open[at..], out);
    open.remove(at);
}

/// Writes close tags, innermost first, for the tags of `open` written so far, and marks them as
/// to be written again should anything follow inside them.
fn close_emitted(open: &mut [OpenTag<'_>], out: &mut String) {
    for tag in open.iter_mut().rev().filter(|tag| tag.emitted) {
        out.push_str("</");
        out.push_str(tag.name);
        out.push('>');
        tag.emitted = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOWED_TAGS: [&str; 8] = ["b", "i", "u", "s", "code", "pre", "a", "blockquote"];

    fn utf16_len(text: &str) -> usize {
        text.encode_utf16().count()
    }

    /// Independent of the module's tokenizer: tags balanced and allowed, every `<`, `>` and `&`
    /// outside a tag part of a tag or an entity.
    fn assert_well_formed(chunk: &str) {
        let mut stack = Vec::new();
        let mut rest = chunk;
        while let Some(at) = rest.find(['<', '>', '&']) {
            rest = &rest[at..];
            if rest.starts_with('>') {
                panic!("stray `>` in {chunk:?}");
            } else if rest.starts_with('&') {
                let end = rest
                    .find(';')
                    .unwrap_or_else(|| panic!("bad entity in {chunk:?}"));
                let body = &rest[1..end];
                assert!(
                    !body.is_empty() && body.chars().all(|c| c.is_ascii_alphanumeric() || c == '#'),
                    "bad entity in {chunk:?}"
                );
                rest = &rest[end + 1..];
            } else {
                let end = rest
                    .find('>')
                    .unwrap_or_else(|| panic!("open tag in {chunk:?}"));
                let tag = &rest[1..end];
                assert!(!tag.contains('<'), "broken tag in {chunk:?}");
                if let Some(name) = tag.strip_prefix('/') {
                    assert_eq!(stack.pop(), Some(name), "unbalanced {chunk:?}");
                } else {
                    let name = tag.split(' ').next().unwrap();
                    assert!(ALLOWED_TAGS.contains(&name), "tag {name} in {chunk:?}");
                    stack.push(name);
                }
                rest = &rest[end + 1..];
            }
        }
        assert!(stack.is_empty(), "unclosed {stack:?} in {chunk:?}");
    }

    /// Each chunk's text must be the next piece of `original`, with only whitespace between pieces,
    /// and have no whitespace at its ends.
    fn assert_pieces_of(original: &str, chunks: &[String]) {
        let mut rest = original;
        for chunk in chunks {
            assert!(!chunk.is_empty());
            assert_eq!(chunk.trim(), chunk, "untrimmed chunk");
            rest = rest.trim_start();
            rest = rest
                .strip_prefix(chunk.as_str())
                .unwrap_or_else(|| panic!("{chunk:?} is not next in {rest:?}"));
        }
        assert_eq!(rest.trim(), "", "text lost at the end");
    }

    fn plain_of(chunks: &[String]) -> Vec<String> {
        chunks.iter().map(|chunk| html_to_plain(chunk)).collect()
    }

    #[test]
    fn short_text_is_unchanged() {
        let html = r#"<b>Hi</b> there, <a href="https://x.y/?a=1&amp;b=2">link</a> &lt;3"#;
        assert_eq!(split_html(html, MESSAGE_LIMIT), [html]);
        assert_eq!(split_html("  hi\n\n", MESSAGE_LIMIT), ["hi"]);
        assert_eq!(
            split_plain(" plain <text> \n", MESSAGE_LIMIT),
            ["plain <text>"]
        );
    }

    #[test]
    fn nothing_to_send_gives_no_chunks() {
        for input in ["", " ", "\n \t\n", "<b> </b>", "<i></i>"] {
            assert!(split_html(input, 10).is_empty(), "{input:?}");
        }
        assert!(split_plain("", 10).is_empty());
        assert!(split_plain(" \n ", 10).is_empty());
    }

    #[test]
    fn long_plain_reply_splits_into_three_chunks() {
        let sentence = "The quick brown fox jumps over the lazy dog near the river bank.";
        let mut text = String::new();
        for n in 0.. {
            text.push_str(sentence);
            text.push(if n % 3 == 2 { '\n' } else { ' ' });
            if text.len() >= 10_000 {
                break;
            }
        }
        text.truncate(10_000);
        let chunks = split_plain(&text, MESSAGE_LIMIT);
        assert_eq!(chunks.len(), 3);
        assert!(chunks.iter().all(|chunk| utf16_len(chunk) <= MESSAGE_LIMIT));
        assert_pieces_of(&text, &chunks);
        assert!(
            chunks[..2].iter().all(|chunk| chunk.ends_with('.')),
            "split at a newline"
        );
    }

    #[test]
    fn split_prefers_newlines_then_spaces_then_anywhere() {
        assert_eq!(
            split_plain("aaa bbb\nccc ddd eee", 12),
            ["aaa bbb", "ccc ddd eee"]
        );
        assert_eq!(split_plain("aaa bbb ccc", 9), ["aaa bbb", "ccc"]);
        assert_eq!(split_plain("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(split_html("<b>aaa\n\n</b>  bbb", 5), ["<b>aaa</b>", "bbb"]);
    }

    #[test]
    fn code_block_chunks_each_reopen_pre_and_code() {
        let open = r#"<pre><code class="language-rust">"#;
        let mut html = String::from(open);
        while visible_len(&html) < 10_000 {
            html.push_str("    if a &lt; b &amp;&amp; c { return \"x\"; }\n");
        }
        html.push_str("</code></pre>");
        let chunks = split_html(&html, MESSAGE_LIMIT);
        assert_eq!(chunks.len(), 3);
        for chunk in &chunks {
            assert!(
                chunk.starts_with(open) && chunk.ends_with("</code></pre>"),
                "{chunk}"
            );
            assert!(visible_len(chunk) <= MESSAGE_LIMIT);
        }
        assert_pieces_of(&html_to_plain(&html), &plain_of(&chunks));
    }

    #[test]
    fn nested_tags_across_a_split_are_closed_and_reopened() {
        assert_eq!(
            split_html("<b><i>aaaa bbbb</i></b>", 5),
            ["<b><i>aaaa</i></b>", "<b><i>bbbb</i></b>"]
        );
        assert_eq!(
            split_html(r#"<a href="x">one two</a> three"#, 5),
            [r#"<a href="x">one</a>"#, r#"<a href="x">two</a>"#, "three"]
        );
    }

    #[test]
    fn entities_are_never_cut_and_count_as_one() {
        assert_eq!(split_html("abc&amp;def", 4), ["abc&amp;", "def"]);
        assert_eq!(split_html("ab&lt;&gt;cd", 3), ["ab&lt;", "&gt;cd"]);
        assert_eq!(visible_len("&amp;&lt;&gt;&quot;&#39;&#x27;"), 6);
        assert_eq!(visible_len("<b>x</b>"), 1);
    }

    #[test]
    fn emoji_count_two_and_are_never_cut() {
        assert_eq!(visible_len("😀"), 2);
        assert_eq!(visible_len("&#128512;"), 2);
        assert_eq!(split_plain("a😀b", 2), ["a", "😀", "b"]);
        assert_eq!(split_html("<i>😀😀😀</i>", 3), ["<i>😀</i>"; 3]);
    }

    #[test]
    fn malformed_html_is_balanced_best_effort() {
        assert_eq!(
            split_html("<b>bold <i>both</b> italic</i>", 100),
            ["<b>bold <i>both</i></b><i> italic</i>"]
        );
        assert_eq!(split_html("a</b>b", 100), ["ab"]);
        assert_eq!(split_html("<b>never closed", 100), ["<b>never closed</b>"]);
        assert_eq!(split_html("a < b &c", 100), ["a < b &c"]);
    }

    #[test]
    fn html_to_plain_decodes_entities_and_drops_tags() {
        let html = "<b>a &lt; b</b> &amp;&amp; &quot;q&quot; it&#39;s &#x27;x&#x27; &#128512;\n\
                    <pre><code class=\"language-rust\">fn</code></pre>";
        assert_eq!(html_to_plain(html), "a < b && \"q\" it's 'x' 😀\nfn");
    }

    #[test]
    fn html_to_plain_keeps_malformed_input() {
        let cases = [
            ("a < b & c", "a < b & c"),
            (
                "x &nbsp; &#xZZ; &#99999999; &#-1; y",
                "x &nbsp; &#xZZ; &#99999999; &#-1; y",
            ),
            ("<b>unclosed", "unclosed"),
            ("5 > 3 </> <", "5 > 3 </> <"),
            ("<<b>x", "<x"),
            ("&", "&"),
        ];
        for (html, plain) in cases {
            assert_eq!(html_to_plain(html), plain, "{html:?}");
        }
    }

    /// xorshift64: reproducible inputs without a dependency.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    const ATOMS: [&str; 20] = [
        "word",
        "hello",
        "a",
        "Zürich",
        "😀",
        "👍🏽",
        "&lt;",
        "&gt;",
        "&amp;",
        "&quot;",
        "&#39;",
        "&#x27;",
        "&#128512;",
        " ",
        " ",
        " ",
        "  ",
        "\n",
        "\n\n",
        "a-very-long-token-without-any-whitespace-in-it-at-all",
    ];

    const ELEMENTS: [(&str, &str); 9] = [
        ("<b>", "</b>"),
        ("<i>", "</i>"),
        ("<u>", "</u>"),
        ("<s>", "</s>"),
        ("<code>", "</code>"),
        ("<pre>", "</pre>"),
        ("<blockquote>", "</blockquote>"),
        (r#"<a href="https://e.x/?q=1&amp;r=2">"#, "</a>"),
        (r#"<pre><code class="language-rust">"#, "</code></pre>"),
    ];

    fn generate(rng: &mut Rng, depth: usize, out: &mut String) {
        for _ in 0..rng.below(12) + 1 {
            if depth < 3 && rng.below(4) == 0 {
                let (open, close) = ELEMENTS[rng.below(ELEMENTS.len())];
                out.push_str(open);
                generate(rng, depth + 1, out);
                out.push_str(close);
            } else {
                out.push_str(rng.pick(&ATOMS));
            }
        }
    }

    #[test]
    fn generated_html_splits_into_well_formed_chunks() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..3000 {
            let mut html = String::new();
            generate(&mut rng, 0, &mut html);
            let limit = 10 + rng.below(191);
            let chunks = split_html(&html, limit);
            for chunk in &chunks {
                assert_well_formed(chunk);
                assert!(visible_len(chunk) <= limit, "{chunk:?} over {limit}");
            }
            assert_pieces_of(&html_to_plain(&html), &plain_of(&chunks));
        }
    }

    #[test]
    fn generated_plain_text_splits_within_the_limit() {
        let mut rng = Rng(42);
        for _ in 0..1000 {
            let text: String = (0..rng.below(200)).map(|_| rng.pick(&ATOMS)).collect();
            let limit = 10 + rng.below(191);
            let chunks = split_plain(&text, limit);
            assert!(chunks.iter().all(|chunk| utf16_len(chunk) <= limit));
            assert_pieces_of(&text, &chunks);
        }
    }

    #[test]
    fn malformed_html_never_panics_and_fits() {
        let fragments = [
            "<",
            ">",
            "&",
            ";",
            "/",
            "#",
            "x",
            "b",
            " ",
            "\n",
            "😀",
            "<b>",
            "</b>",
            "<i>",
            "</i>",
            "</a>",
            r#"<a href="x">"#,
            "&amp;",
            "&#",
            "<b",
            "</",
            "<br/>",
        ];
        let mut rng = Rng(7);
        for _ in 0..2000 {
            let html: String = (0..rng.below(80)).map(|_| rng.pick(&fragments)).collect();
            let limit = 2 + rng.below(40);
            for chunk in split_html(&html, limit) {
                assert!(visible_len(&chunk) <= limit, "{chunk:?} from {html:?}");
                html_to_plain(&chunk);
            }
        }
    }
}
