//! Markdown (as LLMs write it) to the HTML subset Telegram accepts.
//!
//! Telegram rejects a whole message on any unknown or unbalanced tag, and this
//! runs on streamed, half-written replies, so the renderer only ever emits tags
//! from pulldown-cmark's balanced events, closes everything it opens, and
//! escapes every piece of text (including raw HTML from the Markdown).

use pulldown_cmark::{
    Alignment, CodeBlockKind, CowStr, Event, LinkType, Options, Parser, Tag, TagEnd,
};

/// Converts Markdown into Telegram's HTML subset (`parse_mode = "HTML"`).
///
/// The result is always well-formed, even for a prefix of a Markdown text.
pub fn markdown_to_telegram_html(markdown: &str) -> String {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut renderer = Renderer::default();
    for event in Parser::new_ext(markdown, options) {
        renderer.event(event);
    }
    renderer.finish()
}

const BULLET: &str = "• ";

/// Whitespace owed between blocks. It is written lazily, just before the next
/// content, so that the output never starts or ends with blank lines.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
enum Sep {
    #[default]
    None,
    Newline,
    BlankLine,
}

/// An element started by a Markdown tag and not yet ended.
struct Open {
    /// Tag name to close; `None` when no tag was emitted (suppressed nesting,
    /// disallowed link scheme).
    name: Option<&'static str>,
    /// Output length before the opening tag, to drop the element if it stays empty.
    tag_start: usize,
    /// Output length after the opening tag.
    content_start: usize,
    /// Text shown when the element would otherwise be empty (a link's URL).
    fallback: Option<String>,
}

#[derive(Default)]
struct Renderer {
    out: String,
    pending: Sep,
    /// Marker ("• ", "2. ") of the current list item, written with its first content.
    pending_marker: Option<String>,
    open: Vec<Open>,
    /// One entry per enclosing list: the next number, or `None` for bullets.
    lists: Vec<Option<u64>>,
    /// Inside image alt text, which is shown as plain text.
    image_depth: usize,
    code: Option<CodeBlock>,
    table: Option<Table>,
}

impl Renderer {
    fn event(&mut self, event: Event) {
        if let Some(table) = &mut self.table
            && event != Event::End(TagEnd::Table)
        {
            table.event(event);
            return;
        }
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(text) => self.text(&text),
            Event::Code(code) => self.code_span(&code),
            // Raw HTML is shown as literal text, never passed through.
            Event::Html(html) | Event::InlineHtml(html) => self.text(&html),
            Event::SoftBreak | Event::HardBreak => self.line_break(),
            Event::Rule => self.rule(),
            Event::TaskListMarker(checked) => self.task_marker(checked),
            // Math and footnotes are not enabled in the parser options.
            _ => {}
        }
    }

    fn start(&mut self, tag: Tag) {
        if is_block(&tag) {
            // A block never continues the line of a tight list item's text.
            self.pending = self.pending.max(Sep::Newline);
        }
        match tag {
            Tag::Heading { .. } | Tag::Strong => self.open("b", "<b>".into(), None),
            Tag::Emphasis => self.open("i", "<i>".into(), None),
            Tag::Strikethrough => self.open("s", "<s>".into(), None),
            Tag::BlockQuote(_) => self.open("blockquote", "<blockquote>".into(), None),
            Tag::CodeBlock(kind) => self.code = Some(CodeBlock::new(kind)),
            Tag::List(start) => self.lists.push(start),
            Tag::Item => self.start_item(),
            Tag::Table(alignments) => self.table = Some(Table::new(alignments)),
            Tag::Link {
                link_type,
                dest_url,
                ..
            } => self.start_link(link_url(link_type, dest_url)),
            Tag::Image { dest_url, .. } => {
                self.start_link(dest_url.into_string());
                self.image_depth += 1;
            }
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph | TagEnd::HtmlBlock => self.end_block(),
            TagEnd::Heading(_) | TagEnd::BlockQuote(_) => {
                self.close();
                self.end_block();
            }
            TagEnd::CodeBlock => self.end_code_block(),
            TagEnd::List(_) => {
                self.lists.pop();
                self.end_block();
            }
            TagEnd::Item => {
                // An item that never got content is dropped rather than shown as a bare marker.
                self.pending_marker = None;
                self.pending = self.pending.max(Sep::Newline);
            }
            TagEnd::Table => self.end_table(),
            TagEnd::Emphasis | TagEnd::Strong | TagEnd::Strikethrough | TagEnd::Link => {
                self.close()
            }
            TagEnd::Image => {
                self.image_depth -= 1;
                self.close();
            }
            _ => {}
        }
    }

    /// Writes owed separators and list markers; called before any content.
    fn flush(&mut self) {
        let sep = std::mem::take(&mut self.pending);
        // Nothing separates a block from the start of the output or of a quote.
        let at_start = self.out.len() == self.open.last().map_or(0, |open| open.content_start);
        if sep != Sep::None && !at_start {
            self.trim_end();
            self.out
                .push_str(if sep == Sep::BlankLine { "\n\n" } else { "\n" });
            if self.pending_marker.is_none() {
                self.out.push_str(&indent(self.lists.len()));
            }
        }
        if let Some(marker) = self.pending_marker.take() {
            self.out.push_str(&marker);
        }
    }

    /// Drops trailing spaces and newlines, but never inside the innermost open element's tag.
    fn trim_end(&mut self) {
        let floor = self.open.last().map_or(0, |open| open.content_start);
        self.trim_end_to(floor);
    }

    fn end_block(&mut self) {
        // Inside lists, blocks stay compact: one line per paragraph or item.
        let sep = if self.lists.is_empty() {
            Sep::BlankLine
        } else {
            Sep::Newline
        };
        self.pending = self.pending.max(sep);
    }

    fn open(&mut self, name: &'static str, tag: String, fallback: Option<String>) {
        self.flush();
        let tag_start = self.out.len();
        // Telegram rejects nested blockquotes and links, and a tag inside itself adds nothing;
        // alt text is plain.
        let emit = self.image_depth == 0 && !self.is_open(name);
        if emit {
            self.out.push_str(&tag);
        }
        self.open.push(Open {
            name: emit.then_some(name),
            tag_start,
            content_start: self.out.len(),
            fallback,
        });
    }

    /// Tracks an element that emits no tag, so that its end still pairs up.
    fn open_untagged(&mut self) {
        self.flush();
        let start = self.out.len();
        self.open.push(Open {
            name: None,
            tag_start: start,
            content_start: start,
            fallback: None,
        });
    }

    fn close(&mut self) {
        let Some(open) = self.open.pop() else { return };
        if open.name == Some("blockquote") {
            // A quoted HTML block or list can leave a line break before the end.
            self.trim_end_to(open.content_start);
        }
        if self.out.len() == open.content_start
            && let Some(fallback) = &open.fallback
        {
            push_escaped(&mut self.out, fallback, false);
        }
        let Some(name) = open.name else { return };
        if self.out.len() == open.content_start {
            // Empty elements show nothing and only risk an empty message.
            self.out.truncate(open.tag_start);
        } else {
            self.out.push_str("</");
            self.out.push_str(name);
            self.out.push('>');
        }
    }

    fn trim_end_to(&mut self, floor: usize) {
        let keep = self.out.trim_end_matches([' ', '\n']).len().max(floor);
        self.out.truncate(keep);
    }

    fn is_open(&self, name: &str) -> bool {
        self.open.iter().any(|open| open.name == Some(name))
    }

    fn start_item(&mut self) {
        if self.pending_marker.is_some() {
            // The previous item holds only a nested list: still show its marker.
            self.flush();
        }
        self.pending = self.pending.max(Sep::Newline);
        let depth = self.lists.len().saturating_sub(1);
        let marker = match self.lists.last_mut() {
            Some(Some(number)) => {
                let marker = format!("{number}. ");
                *number += 1;
                marker
            }
            _ => BULLET.to_string(),
        };
        self.pending_marker = Some(indent(depth) + &marker);
    }

    fn task_marker(&mut self, checked: bool) {
        let check_box = if checked { "☑ " } else { "☐ " };
        // The parser puts the marker before any item content, so the item marker is still owed.
        if let Some(marker) = &mut self.pending_marker {
            // The box replaces a bullet but follows a number, which still carries information.
            if let Some(stripped) = marker.strip_suffix(BULLET) {
                *marker = stripped.to_string();
            }
            marker.push_str(check_box);
        }
    }

    fn start_link(&mut self, url: String) {
        if is_allowed_url(&url) {
            let mut tag = String::from("<a href=\"");
            push_escaped(&mut tag, &url, true);
            tag.push_str("\">");
            self.open("a", tag, Some(url));
        } else {
            self.open_untagged();
        }
    }

    fn text(&mut self, text: &str) {
        if let Some(code) = &mut self.code {
            code.text.push_str(text);
            return;
        }
        for (index, line) in text.split('\n').enumerate() {
            if index > 0 {
                self.line_break();
            }
            if !line.is_empty() {
                self.flush();
                push_escaped(&mut self.out, line, false);
            }
        }
    }

    fn line_break(&mut self) {
        self.flush();
        if self.image_depth > 0 {
            self.out.push(' ');
            return;
        }
        self.trim_end();
        self.out.push('\n');
        // Continuation lines of a list item line up with the item's text.
        self.out.push_str(&indent(self.lists.len()));
    }

    fn code_span(&mut self, code: &str) {
        self.flush();
        // Telegram does not allow code inside a link; alt text is plain.
        let tagged = self.image_depth == 0 && !self.is_open("a");
        if tagged {
            self.out.push_str("<code>");
        }
        push_escaped(&mut self.out, code, false);
        if tagged {
            self.out.push_str("</code>");
        }
    }

    fn rule(&mut self) {
        self.pending = self.pending.max(Sep::Newline);
        self.flush();
        self.out.push_str("———");
        self.end_block();
    }

    fn end_code_block(&mut self) {
        let Some(block) = self.code.take() else {
            return;
        };
        let body = block.text.trim_end_matches('\n');
        if !body.is_empty() {
            self.flush();
            match &block.language {
                Some(language) => {
                    self.out.push_str("<pre><code class=\"language-");
                    push_escaped(&mut self.out, language, true);
                    self.out.push_str("\">");
                    push_escaped(&mut self.out, body, false);
                    self.out.push_str("</code></pre>");
                }
                None => self.push_pre(body),
            }
        }
        self.end_block();
    }

    fn end_table(&mut self) {
        let Some(table) = self.table.take() else {
            return;
        };
        let text = table.render();
        if !text.is_empty() {
            self.flush();
            self.push_pre(&text);
        }
        self.end_block();
    }

    fn push_pre(&mut self, text: &str) {
        self.out.push_str("<pre>");
        push_escaped(&mut self.out, text, false);
        self.out.push_str("</pre>");
    }

    fn finish(mut self) -> String {
        // Parser events are balanced; this only guards the "always well-formed" promise.
        while !self.open.is_empty() {
            self.close();
        }
        let length = self.out.trim_end().len();
        self.out.truncate(length);
        self.out
    }
}

struct CodeBlock {
    language: Option<String>,
    text: String,
}

impl CodeBlock {
    fn new(kind: CodeBlockKind) -> Self {
        let language = match kind {
            CodeBlockKind::Fenced(info) => info
                .split(|c: char| c.is_whitespace() || c == ',')
                .next()
                .filter(|language| !language.is_empty())
                .map(str::to_string),
            CodeBlockKind::Indented => None,
        };
        CodeBlock {
            language,
            text: String::new(),
        }
    }
}

/// A table collected as plain text, rendered once complete because column
/// widths depend on every row.
struct Table {
    alignments: Vec<Alignment>,
    /// The header row first; cell formatting is dropped.
    rows: Vec<Vec<String>>,
    cell: String,
}

impl Table {
    fn new(alignments: Vec<Alignment>) -> Self {
        Table {
            alignments,
            rows: Vec::new(),
            cell: String::new(),
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Start(Tag::TableHead | Tag::TableRow) => self.rows.push(Vec::new()),
            Event::Start(Tag::TableCell) => self.cell.clear(),
            Event::End(TagEnd::TableCell) => {
                let cell = self.cell.trim().to_string();
                if let Some(row) = self.rows.last_mut() {
                    row.push(cell);
                }
            }
            Event::Text(text) | Event::Code(text) | Event::Html(text) | Event::InlineHtml(text) => {
                self.cell.push_str(&text.replace('\n', " "))
            }
            Event::SoftBreak | Event::HardBreak => self.cell.push(' '),
            _ => {}
        }
    }

    fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|column| {
                let widest = self.rows.iter().filter_map(|row| row.get(column));
                widest
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
                    .max(1)
            })
            .collect();
        let mut lines = Vec::with_capacity(self.rows.len() + 1);
        for (index, row) in self.rows.iter().enumerate() {
            lines.push(self.render_row(row, &widths));
            if index == 0 {
                let dashes: Vec<String> = widths.iter().map(|width| "-".repeat(*width)).collect();
                lines.push(dashes.join("-+-"));
            }
        }
        lines.join("\n")
    }

    fn render_row(&self, row: &[String], widths: &[usize]) -> String {
        // Trailing empty cells would only leave a dangling " |".
        let used = row
            .iter()
            .rposition(|cell| !cell.is_empty())
            .map_or(0, |last| last + 1);
        let cells: Vec<String> = widths
            .iter()
            .take(used)
            .enumerate()
            .map(|(column, width)| {
                let cell = row.get(column).map_or("", String::as_str);
                let alignment = self
                    .alignments
                    .get(column)
                    .copied()
                    .unwrap_or(Alignment::None);
                pad(cell, *width, alignment)
            })
            .collect();
        cells.join(" | ").trim_end().to_string()
    }
}

fn pad(cell: &str, width: usize, alignment: Alignment) -> String {
    let gap = width.saturating_sub(cell.chars().count());
    let (left, right) = match alignment {
        Alignment::Right => (gap, 0),
        Alignment::Center => (gap / 2, gap - gap / 2),
        Alignment::Left | Alignment::None => (0, gap),
    };
    format!("{}{cell}{}", " ".repeat(left), " ".repeat(right))
}

fn is_block(tag: &Tag) -> bool {
    matches!(
        tag,
        Tag::Paragraph
            | Tag::Heading { .. }
            | Tag::BlockQuote(_)
            | Tag::CodeBlock(_)
            | Tag::HtmlBlock
            | Tag::Table(_)
    )
}

fn indent(level: usize) -> String {
    "  ".repeat(level)
}

fn link_url(link_type: LinkType, dest_url: CowStr) -> String {
    match link_type {
        LinkType::Email => format!("mailto:{dest_url}"),
        _ => dest_url.into_string(),
    }
}

/// Only schemes that are safe to open and that Telegram accepts in a text link.
fn is_allowed_url(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once(':') else {
        return false;
    };
    let known = ["http", "https", "mailto", "tg"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s));
    known
        && !rest.trim_start_matches('/').is_empty()
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn push_escaped(out: &mut String, text: &str, in_attribute: bool) {
    // Copies runs between special characters in one go: a push per character was the
    // shaper's hottest function in a profile. The specials are ASCII, so every split
    // falls on a character boundary.
    let mut run_start = 0;
    for (i, byte) in text.bytes().enumerate() {
        let entity = match byte {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' if in_attribute => "&quot;",
            _ => continue,
        };
        out.push_str(&text[run_start..i]);
        out.push_str(entity);
        run_start = i + 1;
    }
    out.push_str(&text[run_start..]);
}

#[cfg(test)]
mod tests {
    use super::markdown_to_telegram_html as render;

    const ALLOWED_TAGS: [&str; 8] = ["b", "i", "u", "s", "code", "pre", "a", "blockquote"];
    const ENTITIES: [&str; 4] = ["&amp;", "&lt;", "&gt;", "&quot;"];

    /// Panics unless `html` is markup Telegram accepts: only allowed tags,
    /// balanced and properly nested, no empty elements, no tag nesting that
    /// Telegram forbids, no raw `<`/`>` in text and only the four entities.
    fn assert_well_formed(html: &str) {
        // (tag name, byte offset where its content starts)
        let mut stack: Vec<(&str, usize)> = Vec::new();
        let mut pos = 0;
        while let Some(found) = html[pos..].find(['<', '>', '&']) {
            let at = pos + found;
            let rest = &html[at..];
            if rest.starts_with('>') {
                panic!("raw '>' at byte {at} in {html:?}");
            }
            if rest.starts_with('&') {
                assert_entity(rest, html);
                pos = at + 1;
                continue;
            }
            let end = at
                + rest
                    .find('>')
                    .unwrap_or_else(|| panic!("unterminated tag in {html:?}"));
            let tag = &html[at + 1..end];
            if let Some(name) = tag.strip_prefix('/') {
                let (open, content_start) = stack
                    .pop()
                    .unwrap_or_else(|| panic!("stray </{name}> in {html:?}"));
                assert_eq!(open, name, "</{name}> closes <{open}> in {html:?}");
                assert!(at > content_start, "empty <{name}> in {html:?}");
            } else {
                let name = assert_open_tag(tag, html);
                assert_nesting_allowed(&stack, name, at, html);
                stack.push((name, end + 1));
            }
            pos = end + 1;
        }
        assert!(stack.is_empty(), "unclosed {stack:?} in {html:?}");
    }

    fn assert_entity(rest: &str, html: &str) {
        assert!(
            ENTITIES.iter().any(|entity| rest.starts_with(entity)),
            "bad '&' at {rest:?} in {html:?}"
        );
    }

    /// Checks the tag's name and attributes and returns the name.
    fn assert_open_tag<'a>(tag: &'a str, html: &str) -> &'a str {
        let (name, attributes) = tag.split_once(' ').unwrap_or((tag, ""));
        assert!(
            ALLOWED_TAGS.contains(&name),
            "tag <{tag}> not allowed in {html:?}"
        );
        let value = match (name, attributes) {
            (_, "") => return name,
            ("a", attributes) => attributes.strip_prefix("href=\""),
            ("code", attributes) => attributes.strip_prefix("class=\"language-"),
            _ => None,
        };
        let value = value
            .and_then(|value| value.strip_suffix('"'))
            .unwrap_or_else(|| panic!("bad attributes in <{tag}> in {html:?}"));
        assert!(!value.is_empty(), "empty attribute in <{tag}>");
        assert!(
            !value.contains(['"', '<']),
            "unescaped attribute in <{tag}>"
        );
        for (at, _) in value.match_indices('&') {
            assert_entity(&value[at..], html);
        }
        name
    }

    fn assert_nesting_allowed(stack: &[(&str, usize)], name: &str, at: usize, html: &str) {
        if let Some(&(parent, content_start)) = stack.last() {
            assert!(parent != "code", "<{name}> inside <code> in {html:?}");
            let bare_pre_code = parent == "pre" && name == "code" && at == content_start;
            assert!(
                parent != "pre" || bare_pre_code,
                "<{name}> inside <pre> in {html:?}"
            );
        }
        let names: Vec<&str> = stack.iter().map(|(open, _)| *open).collect();
        assert!(
            !names.contains(&name),
            "<{name}> nested in itself in {html:?}"
        );
        if name == "code" && !names.ends_with(&["pre"]) {
            assert!(!names.contains(&"a"), "<code> inside <a> in {html:?}");
        }
        if name == "pre" || name == "blockquote" {
            let inline = names.iter().any(|open| *open != "blockquote");
            assert!(
                !inline,
                "block <{name}> inside inline tags {names:?} in {html:?}"
            );
        }
    }

    /// Well-formed, and no leading blank line or trailing whitespace.
    fn assert_clean(html: &str) {
        assert_well_formed(html);
        assert!(!html.starts_with('\n'), "leading newline in {html:?}");
        assert_eq!(html.trim_end(), html, "trailing whitespace in {html:?}");
    }

    /// A realistic LLM reply mixing every construct, with multi-byte characters.
    const REPLY: &str = r#"# Setting up **Rust** on a [Raspberry Pi](https://www.raspberrypi.com/)

Sure! Here's a *quick* guide — it takes ~10 minutes & works on Pi 4/5.
You'll need `curl` and a shell; avoid <sudo> unless asked.

## 1. Install

1. Install rustup:
   ```bash
   curl --proto '=https' -sSf https://sh.rustup.rs | sh
   source "$HOME/.cargo/env"
   ```
2. Check the version with `rustc -V` (should print `1.95.0` or newer).
3. Optional components:
   - **clippy** for lints
   - _rustfmt_ for formatting
     - nested: run `cargo fmt --check` in CI

## 2. Checklist

- [x] Rust installed
- [ ] Cross target `wasm32-wasip2` added
- [ ] ~~Reboot~~ not needed

> **Note:** building on the Pi is *slow*.
> Prefer cross-compiling on a desktop:
> > nested quotes are flattened

| Board | RAM | Build time |
|:------|----:|:----------:|
| Pi 4 | 4 GB | ~12 min |
| Pi 5 | 8 GB | **~6 min** |
| Zürich 🚀 | `n/a` | – |

---

```rust
fn main() {
    let v: Vec<&str> = vec!["a<b", "c&d"];
    println!("{v:?}");
}
```

<details><summary>Raw HTML</summary>should be escaped</details>

Links: <https://doc.rust-lang.org>, <help@example.com>, [bad](javascript:alert(1)),
![logo](https://rust-lang.org/logo.png) and [![badge](https://img.shields.io/x.svg)](https://ci.example.com/?a=1&b=2).

That's it — happy hacking! 🦀"#;

    #[test]
    fn heading_becomes_bold_line() {
        assert_eq!(render("# Title\nText"), "<b>Title</b>\n\nText");
        assert_eq!(
            render("Intro\n\n### Deep *title*\n\nBody"),
            "Intro\n\n<b>Deep <i>title</i></b>\n\nBody"
        );
        assert_eq!(render("Setext\n======"), "<b>Setext</b>");
    }

    #[test]
    fn heading_with_link_keeps_link_inside_bold() {
        assert_eq!(
            render("## See [docs](https://docs.rs)"),
            "<b>See <a href=\"https://docs.rs\">docs</a></b>"
        );
    }

    #[test]
    fn bold_inside_heading_is_not_nested() {
        assert_eq!(render("# A **b** c"), "<b>A b c</b>");
    }

    #[test]
    fn inline_formatting() {
        assert_eq!(render("**bold**"), "<b>bold</b>");
        assert_eq!(render("__bold__"), "<b>bold</b>");
        assert_eq!(render("*em* and _em_"), "<i>em</i> and <i>em</i>");
        assert_eq!(render("~~gone~~"), "<s>gone</s>");
        assert_eq!(render("***both***"), "<i><b>both</b></i>");
        assert_eq!(render("**bold *and em***"), "<b>bold <i>and em</i></b>");
    }

    #[test]
    fn inline_code_is_escaped() {
        assert_eq!(
            render("Use `Vec<&str>` here"),
            "Use <code>Vec&lt;&amp;str&gt;</code> here"
        );
        assert_eq!(render("`**not bold**`"), "<code>**not bold**</code>");
    }

    #[test]
    fn bold_then_raw_script_tag() {
        let html = render("**bold** <script>");
        assert!(html.contains("<b>bold</b>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert_clean(&html);
    }

    #[test]
    fn ampersands_and_angle_brackets_are_escaped() {
        assert_eq!(
            render("Tom & Jerry < 3 > 2"),
            "Tom &amp; Jerry &lt; 3 &gt; 2"
        );
        // Entities in the Markdown are decoded by the parser, then escaped again.
        assert_eq!(render("&amp; &lt; &copy;"), "&amp; &lt; ©");
        assert_eq!(render("\"quotes\" stay"), "\"quotes\" stay");
    }

    #[test]
    fn links_with_allowed_schemes() {
        assert_eq!(
            render("[t](https://e.com)"),
            "<a href=\"https://e.com\">t</a>"
        );
        assert_eq!(
            render("[t](http://e.com)"),
            "<a href=\"http://e.com\">t</a>"
        );
        assert_eq!(
            render("[mail](mailto:a@b.c)"),
            "<a href=\"mailto:a@b.c\">mail</a>"
        );
        assert_eq!(
            render("[me](tg://user?id=1)"),
            "<a href=\"tg://user?id=1\">me</a>"
        );
        assert_eq!(
            render("[t](HTTPS://E.COM)"),
            "<a href=\"HTTPS://E.COM\">t</a>"
        );
    }

    #[test]
    fn links_with_other_schemes_become_text() {
        assert_eq!(render("[x](javascript:alert(1))"), "x");
        assert_eq!(render("[x](ftp://e.com)"), "x");
        assert_eq!(render("[x](/relative/path)"), "x");
        assert_eq!(render("[x](https://)"), "x");
        assert_eq!(render("[**x**](data:text/html,hi)"), "<b>x</b>");
    }

    #[test]
    fn link_attribute_is_escaped() {
        assert_eq!(
            render("[q](https://e.com/?a=1&b=\"2\")"),
            "<a href=\"https://e.com/?a=1&amp;b=&quot;2&quot;\">q</a>"
        );
    }

    #[test]
    fn link_formatting_and_empty_text() {
        assert_eq!(
            render("[**b**](https://e.com)"),
            "<a href=\"https://e.com\"><b>b</b></a>"
        );
        assert_eq!(
            render("[](https://e.com)"),
            "<a href=\"https://e.com\">https://e.com</a>"
        );
    }

    #[test]
    fn code_inside_link_loses_code_tag() {
        assert_eq!(
            render("[`serde`](https://docs.rs/serde)"),
            "<a href=\"https://docs.rs/serde\">serde</a>"
        );
    }

    #[test]
    fn autolinks() {
        assert_eq!(
            render("<https://e.com/a>"),
            "<a href=\"https://e.com/a\">https://e.com/a</a>"
        );
        assert_eq!(
            render("<me@mail.com>"),
            "<a href=\"mailto:me@mail.com\">me@mail.com</a>"
        );
        assert_eq!(render("<ftp://e.com>"), "ftp://e.com");
    }

    #[test]
    fn images_become_links() {
        assert_eq!(
            render("![a *cat*](https://e.com/c.png)"),
            "<a href=\"https://e.com/c.png\">a cat</a>"
        );
        assert_eq!(
            render("![](https://e.com/c.png)"),
            "<a href=\"https://e.com/c.png\">https://e.com/c.png</a>"
        );
        assert_eq!(render("![alt](file:///etc/passwd)"), "alt");
    }

    #[test]
    fn image_inside_link_does_not_nest_links() {
        assert_eq!(
            render("[![badge](https://img/x.svg)](https://ci/x)"),
            "<a href=\"https://ci/x\">badge</a>"
        );
    }

    #[test]
    fn fenced_code_with_language() {
        assert_eq!(
            render("```rust\nfn main() {\n    let a = 1 < 2 && true;\n}\n```"),
            "<pre><code class=\"language-rust\">fn main() {\n    let a = 1 &lt; 2 &amp;&amp; true;\n}</code></pre>"
        );
        assert_eq!(
            render("```python title=\"x\"\npass\n```"),
            "<pre><code class=\"language-python\">pass</code></pre>"
        );
    }

    #[test]
    fn code_language_is_escaped() {
        assert_eq!(
            render("```a\"><b>\nx\n```"),
            "<pre><code class=\"language-a&quot;&gt;&lt;b&gt;\">x</code></pre>"
        );
    }

    #[test]
    fn fenced_and_indented_code_without_language() {
        assert_eq!(
            render("```\n<b>not bold</b>\n\n\n```"),
            "<pre>&lt;b&gt;not bold&lt;/b&gt;</pre>"
        );
        assert_eq!(
            render("Text\n\n    indented\n    code"),
            "Text\n\n<pre>indented\ncode</pre>"
        );
    }

    #[test]
    fn code_blocks_keep_inner_blank_lines_and_markdown() {
        assert_eq!(render("~~~\na\n\n**b**\n~~~"), "<pre>a\n\n**b**</pre>");
    }

    #[test]
    fn empty_code_block_is_dropped() {
        assert_eq!(render("Before\n\n```\n```\n\nAfter"), "Before\n\nAfter");
    }

    #[test]
    fn bullet_list() {
        assert_eq!(render("- one\n- two\n* three"), "• one\n• two\n\n• three");
        assert_eq!(
            render("Intro:\n\n- a\n- b\n\nOutro"),
            "Intro:\n\n• a\n• b\n\nOutro"
        );
    }

    #[test]
    fn ordered_list_respects_start() {
        assert_eq!(render("1. a\n2. b"), "1. a\n2. b");
        assert_eq!(render("7. a\n1. b\n1. c"), "7. a\n8. b\n9. c");
    }

    #[test]
    fn nested_lists_are_indented() {
        assert_eq!(
            render("- a\n  - b\n    1. c\n    2. d\n- e"),
            "• a\n  • b\n    1. c\n    2. d\n• e"
        );
    }

    #[test]
    fn loose_list_is_compact_and_continuations_align() {
        assert_eq!(
            render("1. **One**: x\n\n2. Two\n\n   more"),
            "1. <b>One</b>: x\n2. Two\n  more"
        );
        assert_eq!(render("- line one\n  line two"), "• line one\n  line two");
    }

    #[test]
    fn item_with_only_a_nested_list_keeps_its_marker() {
        assert_eq!(render("-\n  - inner"), "•\n  • inner");
    }

    #[test]
    fn task_list_items() {
        assert_eq!(render("- [ ] todo\n- [x] done"), "☐ todo\n☑ done");
        assert_eq!(render("1. [x] first"), "1. ☑ first");
        assert_eq!(render("- top\n  - [ ] sub"), "• top\n  ☐ sub");
    }

    #[test]
    fn code_block_in_list_item_starts_on_its_own_line() {
        assert_eq!(
            render("1. Run:\n   ```sh\n   make\n   ```\n2. Done"),
            "1. Run:\n  <pre><code class=\"language-sh\">make</code></pre>\n2. Done"
        );
    }

    #[test]
    fn blockquote() {
        assert_eq!(
            render("> quoted *text*\n> more"),
            "<blockquote>quoted <i>text</i>\nmore</blockquote>"
        );
        assert_eq!(
            render("Before\n\n> a\n>\n> b\n\nAfter"),
            "Before\n\n<blockquote>a\n\nb</blockquote>\n\nAfter"
        );
        assert_eq!(render("> - x\n> - y"), "<blockquote>• x\n• y</blockquote>");
    }

    #[test]
    fn nested_blockquotes_are_flattened() {
        assert_eq!(
            render("> outer\n> > inner"),
            "<blockquote>outer\n\ninner</blockquote>"
        );
        assert_eq!(
            render("> > only inner"),
            "<blockquote>only inner</blockquote>"
        );
    }

    #[test]
    fn table_is_padded_pre_block() {
        let markdown = "| Name | Qty |\n|------|-----|\n| **Apple** | 3 |\n| Kiwi & co | `12` |";
        assert_eq!(
            render(markdown),
            "<pre>Name      | Qty\n----------+----\nApple     | 3\nKiwi &amp; co | 12</pre>"
        );
    }

    #[test]
    fn table_counts_chars_not_bytes() {
        let markdown = "| City | X |\n|---|---|\n| Zürich | 1 |\n| Rome | 2 |";
        assert_eq!(
            render(markdown),
            "<pre>City   | X\n-------+--\nZürich | 1\nRome   | 2</pre>"
        );
    }

    #[test]
    fn table_alignment_and_short_rows() {
        let markdown = "| l | r | mid |\n|:--|--:|:-:|\n| a | b | c |\n| long | 10 |";
        assert_eq!(
            render(markdown),
            "<pre>l    |  r | mid\n-----+----+----\na    |  b |  c\nlong | 10</pre>"
        );
    }

    #[test]
    fn table_cells_drop_links_and_escape_html() {
        let markdown = "| a |\n|---|\n| [x](https://e.com) <br> ![i](https://e.com/i.png) |";
        assert_eq!(render(markdown), "<pre>a\n--------\nx &lt;br&gt; i</pre>");
    }

    #[test]
    fn horizontal_rule() {
        assert_eq!(render("above\n\n---\n\nbelow"), "above\n\n———\n\nbelow");
        assert_eq!(render("***"), "———");
    }

    #[test]
    fn raw_html_is_escaped() {
        assert_eq!(
            render("a <span class=\"x\">b</span>"),
            "a &lt;span class=\"x\"&gt;b&lt;/span&gt;"
        );
        assert_eq!(
            render("<div>\n<b>hi</b>\n</div>\n\nafter"),
            "&lt;div&gt;\n&lt;b&gt;hi&lt;/b&gt;\n&lt;/div&gt;\n\nafter"
        );
        assert_eq!(render("<!-- comment -->"), "&lt;!-- comment --&gt;");
    }

    #[test]
    fn line_breaks() {
        assert_eq!(render("soft\nbreak"), "soft\nbreak");
        assert_eq!(render("hard  \nbreak"), "hard\nbreak");
        assert_eq!(render("hard\\\nbreak"), "hard\nbreak");
    }

    #[test]
    fn paragraphs_and_outer_whitespace() {
        assert_eq!(render("\n\n  one\n\n\n\ntwo  \n\n"), "one\n\ntwo");
        assert_eq!(render(""), "");
        assert_eq!(render("   \n\n"), "");
    }

    #[test]
    fn empty_elements_are_not_emitted() {
        assert_eq!(render("#"), "");
        assert_eq!(render("- "), "");
        assert_eq!(render(">"), "");
        assert_eq!(render("- a\n-\n- b"), "• a\n• b");
    }

    #[test]
    fn representative_reply_exact() {
        let markdown = "## Plan\n\nDo **this** first, then `that`:\n\n1. Read [docs](https://docs.rs)\n2. Write code\n   - test it\n\n> Tip: use *cargo*\n\n```rust\nlet x = 1;\n```\n\nDone & dusted.";
        assert_eq!(
            render(markdown),
            "<b>Plan</b>\n\nDo <b>this</b> first, then <code>that</code>:\n\n\
             1. Read <a href=\"https://docs.rs\">docs</a>\n2. Write code\n  • test it\n\n\
             <blockquote>Tip: use <i>cargo</i></blockquote>\n\n\
             <pre><code class=\"language-rust\">let x = 1;</code></pre>\n\nDone &amp; dusted."
        );
    }

    #[test]
    fn full_reply_renders_every_construct() {
        let html = render(REPLY);
        assert_clean(&html);
        for expected in [
            "<b>Setting up Rust on a <a href=\"https://www.raspberrypi.com/\">Raspberry Pi</a></b>",
            "works on Pi 4/5.\nYou'll need <code>curl</code>",
            "avoid &lt;sudo&gt; unless",
            "1. Install rustup:\n  <pre><code class=\"language-bash\">curl --proto",
            "\n    • nested: run <code>cargo fmt --check</code> in CI",
            "☑ Rust installed\n☐ Cross target",
            "<s>Reboot</s>",
            "<blockquote><b>Note:</b> building on the Pi is <i>slow</i>.",
            "nested quotes are flattened</blockquote>",
            "Board    |  RAM | Build time",
            "Zürich 🚀 |  n/a |     –",
            "———",
            "vec![\"a&lt;b\", \"c&amp;d\"];",
            "&lt;details&gt;&lt;summary&gt;Raw HTML",
            "<a href=\"mailto:help@example.com\">help@example.com</a>",
            ", bad,\n<a href=\"https://rust-lang.org/logo.png\">logo</a>",
            "<a href=\"https://ci.example.com/?a=1&amp;b=2\">badge</a>",
        ] {
            assert!(html.contains(expected), "missing {expected:?} in:\n{html}");
        }
    }

    #[test]
    fn unclosed_fence_is_closed() {
        let html = render("Here:\n\n```python\nprint('<hi>')\nfor x in");
        assert_eq!(
            html,
            "Here:\n\n<pre><code class=\"language-python\">print('&lt;hi&gt;')\nfor x in</code></pre>"
        );
        assert_clean(&render("```"));
        assert_clean(&render("```rust\n"));
    }

    #[test]
    fn unclosed_emphasis_is_literal() {
        assert_eq!(render("Some **bold"), "Some **bold");
        assert_eq!(render("Some **bold** and *it"), "Some <b>bold</b> and *it");
        assert_eq!(render("~~strike"), "~~strike");
    }

    #[test]
    fn unclosed_link_is_literal() {
        assert_eq!(render("see [link text](htt"), "see [link text](htt");
        assert_eq!(render("see [link te"), "see [link te");
        assert_eq!(render("see <https://e.co"), "see &lt;https://e.co");
    }

    #[test]
    fn every_prefix_of_a_reply_is_well_formed() {
        let ends = REPLY.char_indices().map(|(at, _)| at).chain([REPLY.len()]);
        for end in ends {
            let html = render(&REPLY[..end]);
            assert_clean(&html);
        }
    }

    /// Random documents from Markdown-significant tokens, from a fixed seed.
    #[test]
    fn random_markdown_is_well_formed() {
        const TOKENS: [&str; 34] = [
            "*",
            "**",
            "_",
            "~~",
            "`",
            "```",
            "```rs\n",
            "[",
            "]",
            "(",
            ")",
            "](https://e.com)",
            "![",
            "<",
            ">",
            "&",
            "\"",
            "#",
            "# ",
            "- ",
            "1. ",
            "  ",
            "\n",
            "\n\n",
            "> ",
            "|",
            "|---|",
            "- [ ] ",
            "---",
            "<b>",
            "</i>",
            "word",
            "é🚀",
            "https://x.y",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            // xorshift64: deterministic and dependency-free.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let length = next() % 40;
            let markdown: String = (0..length)
                .map(|_| TOKENS[(next() % TOKENS.len() as u64) as usize])
                .collect();
            let html = render(&markdown);
            assert_clean(&html);
        }
    }

    #[test]
    fn checker_rejects_bad_markup() {
        let bad = [
            "<b>x",
            "x</b>",
            "<b><i>x</b></i>",
            "<p>x</p>",
            "a < b",
            "a > b",
            "&nbsp;",
            "<b></b>",
            "<a href=\"https://e\"><a href=\"https://f\">x</a></a>",
            "<pre><b>x</b></pre>",
            "<code><i>x</i></code>",
            "<b><pre>x</pre></b>",
            "<blockquote><blockquote>x</blockquote></blockquote>",
            "<a href=\"x\"y\">z</a>",
            "<a href=\"https://e\"><code>x</code></a>",
            "<pre>x<code>y</code></pre>",
        ];
        for html in bad {
            let result = std::panic::catch_unwind(|| assert_well_formed(html));
            assert!(result.is_err(), "checker accepted {html:?}");
        }
        assert_well_formed("<pre><code class=\"language-rust\">x</code></pre>");
        assert_well_formed("<blockquote><b>a <a href=\"tg://x?a=1&amp;b\">b</a></b></blockquote>");
    }
}
