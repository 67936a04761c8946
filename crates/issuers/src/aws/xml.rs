//! Just enough XML for the AWS Query API's responses: elements, text,
//! the five predefined entities, numeric character references and CDATA.
//!
//! Deliberately small: no DTDs (a `<!DOCTYPE` is refused, so no entity
//! expansion can be smuggled in), attributes are skipped (AWS puts only
//! `xmlns` there), namespace prefixes are dropped from names, and nesting
//! is bounded. What it accepts it parses correctly; anything else is an
//! error rather than a guess.

/// One element: its local name, its text (concatenated, entities decoded)
/// and its child elements in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

/// Why a document could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed XML at byte {at}: {what}")]
pub struct XmlError {
    pub at: usize,
    pub what: &'static str,
}

const MAX_DEPTH: usize = 32;

impl Element {
    /// The first child called `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child called `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The element at `path` below this one (child names in order).
    pub fn at(&self, path: &[&str]) -> Option<&Element> {
        path.iter().try_fold(self, |e, name| e.child(name))
    }

    /// The trimmed text of the element at `path`.
    pub fn text_at(&self, path: &[&str]) -> Option<&str> {
        self.at(path).map(|e| e.text.trim())
    }

    /// The first element called `name` anywhere below (depth first).
    pub fn find(&self, name: &str) -> Option<&Element> {
        self.children.iter().find_map(|c| {
            if c.name == name {
                Some(c)
            } else {
                c.find(name)
            }
        })
    }
}

/// Parse a document and return its root element.
pub fn parse(doc: &str) -> Result<Element, XmlError> {
    let mut p = Parser {
        s: doc.as_bytes(),
        doc,
        i: 0,
    };
    p.skip_misc()?;
    let root = p.element(0)?;
    p.skip_misc()?;
    if p.i != p.s.len() {
        return Err(p.err("content after the root element"));
    }
    Ok(root)
}

struct Parser<'a> {
    s: &'a [u8],
    doc: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn err(&self, what: &'static str) -> XmlError {
        XmlError { at: self.i, what }
    }

    fn starts(&self, p: &str) -> bool {
        self.s
            .get(self.i..)
            .is_some_and(|r| r.starts_with(p.as_bytes()))
    }

    /// Move past the next `end`, failing with `what` if there is none.
    fn skip_past(&mut self, end: &str, what: &'static str) -> Result<usize, XmlError> {
        let rest = self.doc.get(self.i..).ok_or_else(|| self.err(what))?;
        let at = rest.find(end).ok_or_else(|| self.err(what))?;
        let start = self.i;
        self.i += at + end.len();
        Ok(start + at)
    }

    fn skip_ws(&mut self) {
        while self.s.get(self.i).is_some_and(|b| b.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    /// Whitespace, the XML declaration, processing instructions, comments.
    fn skip_misc(&mut self) -> Result<(), XmlError> {
        loop {
            self.skip_ws();
            if self.starts("<?") {
                self.skip_past("?>", "unterminated processing instruction")?;
            } else if self.starts("<!--") {
                self.skip_past("-->", "unterminated comment")?;
            } else if self.starts("<!DOCTYPE") || self.starts("<!doctype") {
                return Err(self.err("DOCTYPE is not accepted"));
            } else {
                return Ok(());
            }
        }
    }

    fn name(&mut self) -> Result<String, XmlError> {
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|b| !b.is_ascii_whitespace() && !matches!(b, b'>' | b'/' | b'='))
        {
            self.i += 1;
        }
        let raw = self.doc.get(start..self.i).unwrap_or_default();
        if raw.is_empty() {
            return Err(self.err("empty element name"));
        }
        Ok(raw.rsplit(':').next().unwrap_or(raw).to_string())
    }

    fn element(&mut self, depth: usize) -> Result<Element, XmlError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        if !self.starts("<") {
            return Err(self.err("expected an element"));
        }
        self.i += 1;
        let name = self.name()?;
        // Attributes: skipped, honouring quotes so a `>` inside a value
        // does not end the tag.
        let mut quote: Option<u8> = None;
        let self_closing = loop {
            let Some(&b) = self.s.get(self.i) else {
                return Err(self.err("unterminated start tag"));
            };
            self.i += 1;
            match (quote, b) {
                (Some(q), b) if b == q => quote = None,
                (Some(_), _) => {}
                (None, b'"' | b'\'') => quote = Some(b),
                (None, b'>') => break false,
                (None, b'/') if self.s.get(self.i) == Some(&b'>') => {
                    self.i += 1;
                    break true;
                }
                _ => {}
            }
        };
        let mut el = Element {
            name,
            ..Default::default()
        };
        if self_closing {
            return Ok(el);
        }
        loop {
            if self.starts("</") {
                self.i += 2;
                let end = self.name()?;
                self.skip_ws();
                if end != el.name || !self.starts(">") {
                    return Err(self.err("mismatched end tag"));
                }
                self.i += 1;
                return Ok(el);
            } else if self.starts("<!--") {
                self.skip_past("-->", "unterminated comment")?;
            } else if self.starts("<![CDATA[") {
                self.i += 9;
                let start = self.i;
                let end = self.skip_past("]]>", "unterminated CDATA")?;
                el.text
                    .push_str(self.doc.get(start..end).unwrap_or_default());
            } else if self.starts("<?") {
                self.skip_past("?>", "unterminated processing instruction")?;
            } else if self.starts("<") {
                el.children.push(self.element(depth + 1)?);
            } else if self.i >= self.s.len() {
                return Err(self.err("unterminated element"));
            } else {
                let start = self.i;
                while self.s.get(self.i).is_some_and(|b| *b != b'<') {
                    self.i += 1;
                }
                let raw = self.doc.get(start..self.i).unwrap_or_default();
                decode_into(raw, &mut el.text).map_err(|what| XmlError { at: start, what })?;
            }
        }
    }
}

/// Append `raw` with entities and character references decoded.
fn decode_into(raw: &str, out: &mut String) -> Result<(), &'static str> {
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(rest.get(..amp).unwrap_or_default());
        let after = rest.get(amp + 1..).unwrap_or_default();
        let semi = after.find(';').ok_or("unterminated entity")?;
        let entity = after.get(..semi).unwrap_or_default();
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(h) = entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                {
                    u32::from_str_radix(h, 16).ok()
                } else if let Some(d) = entity.strip_prefix('#') {
                    d.parse::<u32>().ok()
                } else {
                    return Err("unknown entity");
                };
                code.and_then(char::from_u32)
                    .ok_or("invalid character reference")?
            }
        };
        out.push(c);
        rest = after.get(semi + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_sts_answer() {
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <Credentials>
      <AccessKeyId>ASIA1</AccessKeyId>
      <SecretAccessKey>a/b+c&amp;d&#x41;&#66;</SecretAccessKey>
      <Expiration>2026-11-23T18:00:00Z</Expiration>
    </Credentials>
    <Empty/>
    <Note a="x>y"><![CDATA[<raw> & stuff]]></Note>
  </AssumeRoleResult>
  <!-- comment -->
  <ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata>
</AssumeRoleResponse>"#;
        let root = parse(doc).unwrap();
        assert_eq!(root.name, "AssumeRoleResponse");
        assert_eq!(
            root.text_at(&["AssumeRoleResult", "Credentials", "SecretAccessKey"]),
            Some("a/b+c&dAB")
        );
        assert_eq!(root.text_at(&["AssumeRoleResult", "Empty"]), Some(""));
        assert_eq!(
            root.text_at(&["AssumeRoleResult", "Note"]),
            Some("<raw> & stuff")
        );
        assert_eq!(root.find("RequestId").map(|e| e.text.as_str()), Some("r-1"));
        let ns = parse("<a:Root xmlns:a='u'><a:X>1</a:X><a:X>2</a:X></a:Root>").unwrap();
        assert_eq!(
            ns.children_named("X")
                .map(|e| e.text.as_str())
                .collect::<Vec<_>>(),
            ["1", "2"]
        );
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        for bad in [
            "",
            "<a>",
            "<a></b>",
            "<a>&bogus;</a>",
            "<a>&#xD800;</a>",
            "<a>x</a><b/>",
            "<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>",
            "text",
            &format!("{}{}", "<a>".repeat(40), "</a>".repeat(40)),
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
