//! Feed text made fit for one line of a prompt: markup dropped, whitespace collapsed, length
//! capped.

/// `text` with runs of whitespace (newlines included) made one space, and trimmed.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text of an HTML fragment: tags dropped, entities decoded, on one line.
pub fn html_to_text(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find(['<', '&']) {
        text.push_str(&rest[..start]);
        rest = &rest[start..];
        if rest.starts_with('<') {
            // A tag: skip to its end (an unclosed `<` is kept as text).
            match rest.find('>') {
                Some(end) => rest = &rest[end + 1..],
                None => {
                    text.push_str(rest);
                    rest = "";
                }
            }
        } else {
            let (decoded, len) = entity(rest).unwrap_or(('&', 1));
            text.push(decoded);
            rest = &rest[len..];
        }
    }
    text.push_str(rest);
    one_line(&text)
}

/// The character an entity at the start of `text` stands for, and the entity's length. Only
/// XML's five and numeric references: feeds' titles rarely use more, and an unknown one
/// stays as written.
fn entity(text: &str) -> Option<(char, usize)> {
    let end = text.bytes().take(12).position(|b| b == b';')?;
    let name = &text[1..end];
    let decoded = match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => {
            let number = name.strip_prefix('#')?;
            let code = match number.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse().ok()?,
            };
            char::from_u32(code)?
        }
    };
    Some((decoded, end + 1))
}

/// `text` cut to at most `max` characters, with "…" where it was cut.
pub fn capped(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some(_) => {
            let kept: String = text.chars().take(max.saturating_sub(1)).collect();
            format!("{}…", kept.trim_end())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_goes_and_entities_are_decoded() {
        assert_eq!(
            html_to_text("Suite&#8217;s users\n pass <em>10&#x20;million</em> &amp; more"),
            "Suite\u{2019}s users pass 10 million & more"
        );
        assert_eq!(html_to_text("a < b &nbsp; &"), "a < b &nbsp; &");
    }

    #[test]
    fn long_text_is_cut_on_a_character() {
        assert_eq!(capped("short", 10), "short");
        assert_eq!(capped("exactly10!", 10), "exactly10!");
        assert_eq!(capped("Новости дня и ночи", 8), "Новости…");
    }
}
