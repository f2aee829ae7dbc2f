//! PostgreSQL URLs as shown to people: the password is never printed.

/// `url` with its password (in the user info or a `password=` parameter) replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let authority = match authority.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _)) => format!("{user}:***@{host}"),
                    None => format!("{userinfo}@{host}"),
                },
                None => authority.to_owned(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => base.to_owned(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_hidden_everywhere_they_can_be() {
        assert_eq!(
            redact("postgres://clip:s3cr:et@db.example:5432/photos"),
            "postgres://clip:***@db.example:5432/photos"
        );
        assert_eq!(
            redact("postgresql://clip@localhost/photos?password=hunter2&sslmode=disable"),
            "postgresql://clip@localhost/photos?password=***&sslmode=disable"
        );
        assert_eq!(redact("postgres://p%40ss@host"), "postgres://p%40ss@host");
        assert_eq!(
            redact("postgres://u:p@w@host/db"),
            "postgres://u:***@host/db"
        );
    }
}
