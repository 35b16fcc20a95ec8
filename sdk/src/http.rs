//! Outgoing HTTP for adapters with their own connection, over `wasi:http`.
//! The host sends a request only to the target's host and port.

/// An HTTP response, read whole.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code, e.g. 200.
    pub status: u16,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `POST`s `body` to `url` (`http://host:port/path?query`) with `headers`;
/// the body is streamed, so it may be large. `Err`: the request could not
/// be made or answered (refused by the host's grants, connection refused),
/// not a status: read [`Response::status`]. An error names the server
/// (`http://host:port`), never the path or query.
pub fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Response, String> {
    imp::send("POST", url, headers, Some(body))
}

/// `GET`s `url` with `headers`.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Result<Response, String> {
    imp::send("GET", url, headers, None)
}

/// `(scheme, authority, path and query)` of an `http(s)://` URL.
fn split_url(url: &str) -> Result<(&str, &str, &str), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}` is not an http:// URL"))?;
    if scheme != "http" && scheme != "https" {
        return Err(format!("`{url}` is not an http:// or https:// URL"));
    }
    let at = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(at);
    let path = if path.is_empty() { "/" } else { path };
    Ok((scheme, authority, path))
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme};
    use wasi::io::streams::StreamError;

    use super::{Response, split_url};

    /// The most `wasi:io` lets one write call carry.
    const CHUNK: usize = 4096;

    pub(super) fn send(
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Response, String> {
        let (scheme, authority, path) = split_url(url)?;
        // Errors name the server, never the path or query, which may
        // carry a secret.
        let shown = format!("{scheme}://{authority}");
        let url = shown.as_str();
        let fields: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect();
        let fields = Fields::from_list(&fields).map_err(|e| format!("header: {e:?}"))?;
        let request = OutgoingRequest::new(fields);
        let method = match method {
            "POST" => Method::Post,
            _ => Method::Get,
        };
        let scheme = match scheme {
            "https" => Scheme::Https,
            _ => Scheme::Http,
        };
        request
            .set_method(&method)
            .and_then(|()| request.set_scheme(Some(&scheme)))
            .and_then(|()| request.set_authority(Some(authority)))
            .and_then(|()| request.set_path_with_query(Some(path)))
            .map_err(|()| format!("{url}: not a valid request path"))?;
        let outgoing = request
            .body()
            .map_err(|()| "the request body was taken".to_string())?;
        // Sent before the body is written: the host buffers little of a
        // body, so a large one is streamed while the server reads it.
        let pending = outgoing_handler::handle(request, None)
            .map_err(|e| format!("{url}: the request failed: {e:?}"))?;
        {
            let stream = outgoing
                .write()
                .map_err(|()| "the request body stream was taken".to_string())?;
            for chunk in body.unwrap_or_default().chunks(CHUNK) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| format!("{url}: sending the request body: {e:?}"))?;
            }
        }
        OutgoingBody::finish(outgoing, None)
            .map_err(|e| format!("{url}: finishing the request body: {e:?}"))?;
        let response = loop {
            match pending.get() {
                Some(answer) => break answer,
                None => pending.subscribe().block(),
            }
        };
        let response = response
            .map_err(|()| format!("{url}: the response was taken"))?
            .map_err(|e| format!("{url}: {e:?}"))?;
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let incoming = response
            .consume()
            .map_err(|()| "the response body was taken".to_string())?;
        let mut body = Vec::new();
        {
            let stream = incoming
                .stream()
                .map_err(|()| "the response body stream was taken".to_string())?;
            loop {
                match stream.blocking_read(1 << 16) {
                    Ok(chunk) => body.extend_from_slice(&chunk),
                    Err(StreamError::Closed) => break,
                    Err(e) => return Err(format!("{url}: reading the response: {e:?}")),
                }
            }
        }
        drop(IncomingBody::finish(incoming));
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::Response;

    /// A plugin runs as a component; a native build (its unit tests) has
    /// no `wasi:http` to send through.
    pub(super) fn send(
        _: &str,
        url: &str,
        _: &[(&str, &str)],
        _: Option<&[u8]>,
    ) -> Result<Response, String> {
        super::split_url(url)?;
        Err("HTTP is available only inside a component (wasm32-wasip2)".into())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_url_splits_into_scheme_authority_and_path() {
        assert_eq!(
            super::split_url("http://127.0.0.1:8123/?database=x").unwrap(),
            ("http", "127.0.0.1:8123", "/?database=x")
        );
        assert_eq!(
            super::split_url("https://h?q").unwrap(),
            ("https", "h", "?q")
        );
        assert_eq!(super::split_url("http://h").unwrap(), ("http", "h", "/"));
        assert!(super::split_url("ftp://h/").is_err());
        assert!(super::split_url("h/").is_err());
    }
}
