use super::*;

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    /// A directory holding `shop.pem`/`shop.key` for `shop.example` and `*.shop.example`,
    /// and `other.key`, a key that matches nothing.
    fn new() -> Dir {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["shop.example".into(), "*.shop.example".into()])
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("shop.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("shop.key"), key.serialize_pem()).unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(dir.path().join("other.key"), other.serialize_pem()).unwrap();
        Dir { dir }
    }

    fn parse(&self, text: &str) -> Result<Loaded, ConfigError> {
        parse(text, &self.dir.path().join("palisade.toml"))
    }

    fn errors(&self, text: &str) -> Vec<String> {
        match self.parse(text) {
            Ok(_) => panic!("config was accepted:\n{text}"),
            Err(e) => e
                .diagnostics()
                .iter()
                .map(|d| format!("{}:{}: {}", d.line, d.col, d.message))
                .collect(),
        }
    }
}

const MINIMAL: &str = r#"
[[certificates]]
cert = "shop.pem"
key = "shop.key"

[[sites]]
name = "shop"
hosts = ["shop.example"]
upstreams = ["127.0.0.1:8080"]
"#;

#[test]
fn minimal_file_gets_secure_defaults() {
    let d = Dir::new();
    let c = d.parse(MINIMAL).unwrap().config;
    assert_eq!(c.server.http, Some("0.0.0.0:80".parse().unwrap()));
    assert_eq!(c.server.https, Some("0.0.0.0:443".parse().unwrap()));
    assert_eq!(c.server.admin, Some("127.0.0.1:9901".parse().unwrap()));
    assert!(c.server.trusted_proxies.is_empty());
    assert_eq!(c.tls.unknown_sni, UnknownSni::Default);
    let cert = &c.tls.certificates[0];
    assert!(cert.default, "the only certificate is the default");
    assert_eq!(
        cert.hosts,
        vec![
            HostPattern::Exact("shop.example".into()),
            HostPattern::Wildcard("shop.example".into())
        ],
        "hosts come from the certificate's SANs"
    );
    let s = &c.sites[0];
    assert!(s.https_redirect);
    assert_eq!(s.hsts.header_value().as_deref(), Some("max-age=31536000"));
    assert_eq!(s.headers.x_content_type_options.as_deref(), Some("nosniff"));
    assert_eq!(s.headers.x_frame_options.as_deref(), Some("SAMEORIGIN"));
    assert!(s.headers.remove.contains(&"x-powered-by".to_string()));
    assert!(s.headers.remove.contains(&"server".to_string()));
    let flags = s.cookies.flags_for("anything");
    assert!(flags.secure && flags.http_only);
    assert_eq!(flags.same_site, Some(SameSite::Lax));
    assert_eq!(
        s.upstream.backends[0].addr,
        "127.0.0.1:8080".parse().unwrap()
    );
    assert!(!s.upstream.backends[0].tls);
    assert!(s.upstream.tls_verify);
}

#[test]
fn misspelt_key_is_reported_with_its_line_and_column() {
    let d = Dir::new();
    let text = format!("{MINIMAL}\n[sites.hsts]\nmax_agee = 10\n");
    let errs = d.errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("12:1: unknown field `max_agee`"),
        "{errs:?}"
    );
}

#[test]
fn diagnostics_render_as_file_line_col() {
    let d = Dir::new();
    let err = d.parse("[server]\nhttp = \"nowhere\"\n").err().unwrap();
    let line = err.to_string();
    let expected = format!(
        "{}:2:8: `nowhere` is not a listen address",
        d.dir.path().join("palisade.toml").display()
    );
    assert!(line.starts_with(&expected), "{line}");
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let d = Dir::new();
    let text = r#"
[server]
http = "bad"
trusted_proxies = ["10.0.0.0/8", "not-a-net"]
shutdown_grace = "soon"

[[certificates]]
cert = "missing.pem"
key = "shop.key"

[[sites]]
name = "shop"
hosts = ["shop.example", "bad host"]
upstreams = ["ftp://10.0.0.1:21"]
"#;
    let errs = d.errors(text);
    let joined = errs.join("\n");
    assert!(
        joined.contains("3:8: `bad` is not a listen address"),
        "{joined}"
    );
    assert!(
        joined.contains("4:34: `not-a-net` is not an IP address or CIDR"),
        "{joined}"
    );
    assert!(
        joined.contains("5:18: `soon` is not a duration"),
        "{joined}"
    );
    assert!(joined.contains("8:8: cannot read"), "{joined}");
    assert!(
        joined.contains("13:26: `bad host` is not a valid host name"),
        "{joined}"
    );
    assert!(
        joined.contains("14:14: upstream `ftp://10.0.0.1:21`: only http:// and https://"),
        "{joined}"
    );
}

#[test]
fn certificate_must_match_its_key() {
    let d = Dir::new();
    let text = MINIMAL.replace("key = \"shop.key\"", "key = \"other.key\"");
    let errs = d.errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("4:7: "), "{errs:?}");
    assert!(
        errs[0].contains("does not match the certificate"),
        "{errs:?}"
    );
    assert!(
        !errs[0].contains("PRIVATE KEY"),
        "key material never appears in errors"
    );
}

#[test]
fn names_and_hosts_must_be_unique() {
    let d = Dir::new();
    let text = format!(
        "{MINIMAL}\n[[sites]]\nname = \"shop\"\nhosts = [\"shop.example\"]\nupstreams = [\"127.0.0.1:8081\"]\n"
    );
    let errs = d.errors(&text).join("\n");
    assert!(errs.contains("site name `shop` is used twice"), "{errs}");
    assert!(
        errs.contains("host `shop.example` is already served by site `shop`"),
        "{errs}"
    );
}

#[test]
fn https_listener_needs_a_certificate() {
    let d = Dir::new();
    let text = "[[sites]]\nname = \"s\"\nhosts = [\"a.example\"]\nupstreams = [\"127.0.0.1:1\"]\n";
    let errs = d.errors(text).join("\n");
    assert!(
        errs.contains("needs at least one [[certificates]]"),
        "{errs}"
    );
    let ok = format!("[server]\nhttps = \"off\"\n{text}");
    let loaded = d.parse(&ok).unwrap();
    assert!(loaded.config.server.https.is_none());
    assert_eq!(
        loaded.warnings.len(),
        1,
        "redirecting to an https that is off is flagged"
    );
}

#[test]
fn hsts_preload_needs_subdomains_and_a_year() {
    let d = Dir::new();
    let text = format!("{MINIMAL}\n[sites.hsts]\nmax_age = 600\npreload = true\n");
    let errs = d.errors(&text).join("\n");
    assert!(errs.contains("13:11: HSTS preload requires"), "{errs}");
    let ok = format!("{MINIMAL}\n[sites.hsts]\ninclude_subdomains = true\npreload = true\n");
    let c = d.parse(&ok).unwrap().config;
    assert_eq!(
        c.sites[0].hsts.header_value().as_deref(),
        Some("max-age=31536000; includeSubDomains; preload")
    );
}

#[test]
fn cookie_exceptions_override_the_defaults_per_name() {
    let d = Dir::new();
    let text = format!("{MINIMAL}\n[sites.cookies.exceptions]\ncart = {{ http_only = false }}\n");
    let c = d.parse(&text).unwrap().config;
    let cart = c.sites[0].cookies.flags_for("cart");
    assert!(!cart.http_only && cart.secure);
    assert!(c.sites[0].cookies.flags_for("session").http_only);
}

#[test]
fn header_values_are_checked_and_can_be_switched_off() {
    let d = Dir::new();
    let text = format!(
        "{MINIMAL}\n[sites.headers]\nx_frame_options = \"off\"\nreferrer_policy = \"no-referrer\\n\"\nkeep = [\"Server\"]\n"
    );
    let errs = d.errors(&text).join("\n");
    assert!(
        errs.contains("13:19: not a valid HTTP header value"),
        "{errs}"
    );
    let ok =
        format!("{MINIMAL}\n[sites.headers]\nx_frame_options = \"off\"\nkeep = [\"Server\"]\n");
    let s = d.parse(&ok).unwrap().config.sites.remove(0);
    assert_eq!(s.headers.x_frame_options, None);
    assert!(!s.headers.remove.contains(&"server".to_string()));
    assert!(s.headers.remove.contains(&"x-powered-by".to_string()));
}

#[test]
fn lints_flag_weak_but_legal_settings() {
    let d = Dir::new();
    let text = format!(
        "[server]\nadmin = \"0.0.0.0:9901\"\ntrusted_proxies = [\"0.0.0.0/0\"]\n{MINIMAL}\n[sites.hsts]\nenabled = false\n"
    );
    let w: Vec<String> = d
        .parse(&text)
        .unwrap()
        .warnings
        .iter()
        .map(|w| w.message.clone())
        .collect();
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(w.iter().all(|m| m.starts_with("warning: ")));
}

#[test]
fn host_patterns_match_one_label_only() {
    let w = HostPattern::parse("*.Shop.Example.").unwrap();
    assert!(w.matches("www.shop.example"));
    assert!(!w.matches("shop.example"));
    assert!(!w.matches("a.b.shop.example"));
    assert!(!w.matches("evilshop.example"));
    assert!(HostPattern::parse("*.com").is_err());
}

#[test]
fn backends_take_scheme_and_default_ports() {
    let b = parse_backend("https://127.0.0.1").unwrap();
    assert!(b.tls);
    assert_eq!(b.addr.port(), 443);
    let b = parse_backend("http://[::1]:8080").unwrap();
    assert_eq!(b.addr, "[::1]:8080".parse().unwrap());
    assert!(parse_backend("http://10.0.0.1:80/shop").is_err());
}

#[test]
fn durations_parse_with_units() {
    assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert!(parse_duration("5").is_err());
    assert!(parse_duration("-1s").is_err());
}

#[test]
fn trusted_proxies_match_ipv4_mapped_addresses() {
    let t = TrustedProxies::new(vec![parse_cidr("10.0.0.0/8").unwrap()]);
    assert!(t.contains("10.1.2.3".parse().unwrap()));
    assert!(t.contains("::ffff:10.1.2.3".parse().unwrap()));
    assert!(!t.contains("11.0.0.1".parse().unwrap()));
}

#[test]
fn shipped_example_config_is_valid_apart_from_its_certificate_paths() {
    let text = include_str!("../../../config/palisade.toml");
    let err = parse(text, Path::new("config/palisade.toml")).err();
    // The example points at /etc/palisade/tls, which does not exist here: those are the only errors.
    if let Some(e) = err {
        for d in e.diagnostics() {
            assert!(d.message.contains("cannot read /etc/palisade/"), "{d}");
        }
    }
}

#[test]
fn access_rules_match_every_spelling_of_a_path() {
    for p in [
        "/admin",
        "/Admin",
        "//admin",
        "/%61dmin",
        "/%2561dmin",
        "/x/../admin",
        "/./admin/",
        "\\admin",
    ] {
        assert!(
            normalize_path(p).starts_with("/admin"),
            "{p} -> {}",
            normalize_path(p)
        );
    }
    assert_eq!(normalize_path("/../../etc"), "/etc");
    assert_eq!(normalize_path(""), "/");
    let route = Route {
        name: "login".into(),
        path: normalize_path("/Login"),
        methods: vec!["POST".into()],
        rate_limit: None,
        basic_auth: None,
        allow: vec![],
        api_keys: None,
        client_cert: false,
    };
    assert!(route.matches("POST", &normalize_path("/LOGIN/")));
    assert!(!route.matches("GET", "/login"));
}

#[test]
fn routes_are_validated_with_positions() {
    let d = Dir::new();
    let text = format!(
        "{MINIMAL}\n[[sites.routes]]\nname = \"login\"\npath = \"login\"\nrate_limit = {{ key = \"ip\", rate = \"5/fortnight\" }}\nclient_cert = true\n"
    );
    let errs = d.errors(&text).join("\n");
    assert!(
        errs.contains("13:8: route path must start with `/`"),
        "{errs}"
    );
    assert!(
        errs.contains("14:"),
        "the bad rate is reported on its line: {errs}"
    );
    assert!(
        errs.contains("15:15: client_cert = true needs `[tls] client_ca`"),
        "{errs}"
    );
}

#[test]
fn custom_waf_rule_with_an_unsound_prefilter_is_refused_at_its_line() {
    let d = Dir::new();
    let text = format!(
        "{MINIMAL}\n[sites.waf]\nrules = [\n  {{ id = \"shop-2\", category = \"custom\", targets = [\"path\"], regex = '/(?:xmlrpc|wp-login)\\.php', prefilter = [\"wp-\"] }},\n]\n"
    );
    let errs = d.errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    // Line 13, the rule's inline table; the message shows a path it would miss.
    assert!(
        errs[0].starts_with("13:3: waf: rule \"shop-2\": prefilter is not sound"),
        "{errs:?}"
    );
    assert!(errs[0].contains("/xmlrpc.php"), "{errs:?}");
}
