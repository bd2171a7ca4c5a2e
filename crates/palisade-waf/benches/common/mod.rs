//! The requests the engine benchmark measures, shared with `examples/profile_rules.rs` so that
//! its `REQ=bench`, `REQ=get2k` and `REQ=body64` instruction counts are of the very same requests.

use palisade_waf::Request;

/// A GET of `target` with `headers`, no body.
pub fn get_request<'a>(target: &'a [u8], headers: &'a [(&'a str, &'a [u8])]) -> Request<'a> {
    Request {
        method: "GET",
        target,
        version: "HTTP/1.1",
        headers,
        body: None,
        body_truncated: false,
    }
}

/// A browser's headers for a shop page, 14 of them, with `cookie` as the Cookie header.
pub fn browser_headers(cookie: &'static [u8]) -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("Host", b"shop.example"),
        ("User-Agent", b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
        ("Accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
        ("Accept-Language", b"fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7"),
        ("Accept-Encoding", b"gzip, deflate, br, zstd"),
        ("Referer", b"https://shop.example/collections/chaussures?page=2&sort=price-asc"),
        ("Connection", b"keep-alive"),
        ("Cookie", cookie),
        ("Upgrade-Insecure-Requests", b"1"),
        ("Sec-Fetch-Dest", b"document"),
        ("Sec-Fetch-Mode", b"navigate"),
        ("Sec-Fetch-Site", b"same-origin"),
        ("Sec-Fetch-User", b"?1"),
        ("Priority", b"u=0, i"),
    ]
}

pub const COOKIE: &[u8] = b"PHPSESSID=8f14e45fceea167a5a36dedd4bea2543; form_key=Zx81kQpL0aVb3nTe; mage-cache-storage=%7B%7D; mage-cache-sessid=true; section_data_ids=%7B%22cart%22%3A1732190000%2C%22customer%22%3A1732190000%7D; private_content_version=4c2b7a1f0e8d9c6b5a4f3e2d1c0b9a87; _ga=GA1.1.1234567890.1732190000; _ga_ABC123=GS1.1.1732190000.3.1.1732190456.0.0.0; cookie_consent=%7B%22necessary%22%3Atrue%2C%22analytics%22%3Atrue%7D; store=fr; currency=EUR";

pub const TARGET_2K: &[u8] = b"/catalogsearch/result/index/?q=chaussures+de+randonn%C3%A9e+femme+imperm%C3%A9able&cat=42&price=50-120&color=bleu&size=38&brand=Salomon&sort=relevance&dir=desc&page=2&limit=36&utm_source=newsletter&utm_medium=email&utm_campaign=black-friday-2026&utm_content=hero-banner&gclid=Cj0KCQiA1ZGcBhCoARIsAGQ0kkqfY3bN8rV2c5lT1xWmE0x4&fbclid=IwAR2xK9vQ7bZ3mY1pL4nT8wR6sD0fG5hJ2kL9zX3cV7bN1mQ4wE";

/// Chrome's headers for the same shop page with the cookies a shop front collects after a few
/// visits (session, cart sections, consent, analytics, ads pixels, A/B test): with
/// `TARGET_2K` they make a request of 2,048 bytes on the wire (see `wire_size`).
pub fn chrome_headers() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("Host", b"shop.example"),
        ("Connection", b"keep-alive"),
        ("sec-ch-ua", b"\"Google Chrome\";v=\"131\", \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\""),
        ("sec-ch-ua-mobile", b"?0"),
        ("sec-ch-ua-platform", b"\"Windows\""),
        ("Upgrade-Insecure-Requests", b"1"),
        ("User-Agent", b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"),
        ("Accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"),
        ("Sec-Fetch-Site", b"same-origin"),
        ("Sec-Fetch-Mode", b"navigate"),
        ("Sec-Fetch-User", b"?1"),
        ("Sec-Fetch-Dest", b"document"),
        ("Referer", b"https://shop.example/collections/chaussures?page=2&sort=price-asc"),
        ("Accept-Encoding", b"gzip, deflate, br, zstd"),
        ("Accept-Language", b"fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7"),
        ("Cookie", COOKIE_2K),
        ("Priority", b"u=0, i"),
    ]
}

pub const COOKIE_2K: &[u8] = b"PHPSESSID=8f14e45fceea167a5a36dedd4bea2543; form_key=Zx81kQpL0aVb3nTe; mage-cache-storage=%7B%7D; mage-cache-storage-section-invalidation=%7B%7D; mage-cache-sessid=true; mage-messages=; section_data_ids=%7B%22cart%22%3A1732190000%2C%22customer%22%3A1732190000%2C%22wishlist%22%3A1732190000%7D; private_content_version=4c2b7a1f0e8d9c6b5a4f3e2d1c0b9a87; X-Magento-Vary=9bf9a599123e6402b85cde67144717a08b817412; product_data_storage=%7B%7D; _ga=GA1.1.1234567890.1732190000; _ga_ABC12345=GS1.1.1732190000.3.1.1732190456.0.0.0; _gcl_au=1.1.987654321.1732190000; _fbp=fb.1.1732190000123.1234567890; _hjSessionUser_3141592=eyJpZCI6IjZmYjQ0YzQ1LTk4ZjItNTdhMi1iYzNkLTFhMmIzYzRkNWU2ZiIsImNyZWF0ZWQiOjE3MzIxOTAwMDAwMDAsImV4aXN0aW5nIjp0cnVlfQ==; cookie_consent=%7B%22necessary%22%3Atrue%2C%22analytics%22%3Atrue%2C%22marketing%22%3Afalse%7D; ab_home=variant-b; store=fr; currency=EUR";

/// Distinct visitors taken in turn by the new-visitor benchmark: with about 12 values of their
/// own each, some 24 times the memo's 2,048 slots, so a visitor's values are long evicted when
/// their turn comes again.
pub const VISITORS: u32 = 4096;

/// `COOKIE_2K` as visitor `i` has it: the same cookies, with every per-visitor value its own (the
/// session, the form key, the content version, analytics and ads ids, visit times, the Hotjar
/// user in its Base64 JSON), each of the same length, so the request stays 2,048 bytes.
pub fn visitor_cookie(i: u32) -> Vec<u8> {
    // splitmix64: distinct, well-spread ids per visitor.
    let mix = |k: u64| {
        let mut z = (u64::from(i) << 8 | k).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let hex32 = |k: u64| format!("{:016x}{:016x}", mix(k), mix(k + 1));
    let alnum = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let form_key: String = (0..16u64)
        .map(|k| alnum[(mix(10 + k) % 62) as usize] as char)
        .collect();
    let ts = 1_732_190_000 + u64::from(i) % 1_000_000;
    let uuid = {
        let h = hex32(20);
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    };
    let hotjar =
        base64(format!(r#"{{"id":"{uuid}","created":{ts}000,"existing":true}}"#).as_bytes());
    let jar = String::from_utf8_lossy(COOKIE_2K)
        .replace("8f14e45fceea167a5a36dedd4bea2543", &hex32(1))
        .replace("4c2b7a1f0e8d9c6b5a4f3e2d1c0b9a87", &hex32(3))
        .replace("Zx81kQpL0aVb3nTe", &form_key)
        .replace(
            "eyJpZCI6IjZmYjQ0YzQ1LTk4ZjItNTdhMi1iYzNkLTFhMmIzYzRkNWU2ZiIsImNyZWF0ZWQiOjE3MzIxOTAwMDAwMDAsImV4aXN0aW5nIjp0cnVlfQ==",
            &hotjar,
        )
        .replace("1732190000", &ts.to_string())
        .replace("1732190456", &(ts + 456).to_string())
        .replace("1234567890", &format!("{:010}", mix(5) % 10_000_000_000))
        .replace("987654321", &format!("{:09}", mix(6) % 1_000_000_000));
    assert_eq!(
        jar.len(),
        COOKIE_2K.len(),
        "visitor {i}'s cookie jar changed size"
    );
    jar.into_bytes()
}

/// Standard Base64 with padding.
fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `chrome_headers` with `cookie` as the Cookie header.
pub fn with_cookie<'a>(
    headers: &[(&'static str, &'static [u8])],
    cookie: &'a [u8],
) -> Vec<(&'static str, &'a [u8])> {
    headers
        .iter()
        .map(|&(n, v)| (n, if n == "Cookie" { cookie } else { v }))
        .collect()
}

/// The bytes `method target HTTP/1.1` and `headers` take on the wire (request line, one
/// `name: value` line each, the empty line).
pub fn wire_size(method: &str, target: &[u8], headers: &[(&str, &[u8])]) -> usize {
    method.len()
        + 1
        + target.len()
        + " HTTP/1.1\r\n".len()
        + headers
            .iter()
            .map(|(n, v)| n.len() + 2 + v.len() + 2)
            .sum::<usize>()
        + 2
}

/// A benign text body (a customer's message, repeated) of exactly `kib` KiB.
pub fn text_body(kib: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(kib * 1024);
    let mut n = 0;
    while body.len() < kib * 1024 {
        body.extend_from_slice(format!("Livraison rapide et soignee, merci {n}. Le colis est arrive en bon etat (taille M).\n").as_bytes());
        n += 1;
    }
    body.truncate(kib * 1024);
    body
}

/// A benign 10 KiB JSON cart (a REST API call of a headless shop front).
pub fn json_cart() -> String {
    let mut json = String::from("{\"cart\":{\"id\":\"c-8812\",\"items\":[");
    let mut i = 0;
    while json.len() < 10 * 1024 {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&format!(
            "{{\"sku\":\"SKU-{i:05}\",\"name\":\"T-shirt coton bio n\\u00b0{i} \\\"classic\\\"\",\"qty\":{},\"price\":{}.99,\"options\":{{\"size\":\"M\",\"color\":\"bleu marine\"}}}}",
            i % 5 + 1,
            10 + i
        ));
        i += 1;
    }
    json.push_str("]},\"customer\":{\"email\":\"jean.dupont@example.fr\",\"note\":\"Merci d'emballer s\\u00e9par\\u00e9ment\"}}");
    json
}
