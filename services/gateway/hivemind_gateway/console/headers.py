"""Response headers of every console page and asset: nothing loads from another origin."""

from __future__ import annotations

# every script, style, image and fetch comes from the gateway itself; no frames, no plugins
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)

PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # same-origin posts carry our Origin, not "null"
    "Cache-Control": "no-store",
}
