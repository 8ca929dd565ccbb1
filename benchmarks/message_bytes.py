"""Per-recipient MIME bytes for a ~70 KB edition: the per-edition skeleton against a naive build.

Baseline, in the same run: personalise with str.replace, then `EmailMessage` + `as_bytes()` per reader
(and dkimpy for DKIM). Prints one JSON line with medians in microseconds per recipient and the longest
line found in the fast path's output (body lines must stay at most 76 characters).

    .venv/bin/python benchmarks/message_bytes.py [--rounds 5] [--recipients 400]
"""

from __future__ import annotations

import argparse
import html as htmllib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from briefing.domain import TOKEN_FIRST_NAME, TOKEN_PREFERENCES_URL, TOKEN_UNSUBSCRIBE_URL, Recipient
from briefing.mail.dkim import DkimSigner
from briefing.mail.message import MessageTemplate

WHEN = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
NAIVE_POLICY = policy.SMTP.clone(max_line_length=998)  # the usual fix for List-Unsubscribe (LIBRARIES.md #5)


def edition(target_bytes: int = 70_000) -> tuple[str, str]:
    """MJML-compiled HTML (long lines, as MRML writes them) of about target_bytes, plus a text part."""
    story = (
        "<mj-section><mj-column><mj-text font-size='20px' font-weight='bold'>Headline number {i}: "
        "council approves the caf\u00e9 plan</mj-text><mj-text>Residents said the decision, taken late on "
        "Tuesday after a four-hour meeting, would change the high street \u2014 &amp; not everyone agrees. "
        "{pad}</mj-text><mj-button href='https://news.example.com/2026/11/28/story-{i}'>Read more"
        "</mj-button></mj-column></mj-section>"
    )
    footer = (
        f"<mj-section><mj-column><mj-text>Hello {TOKEN_FIRST_NAME}. "
        f"<a href='{TOKEN_PREFERENCES_URL}'>Preferences</a> \u00b7 "
        f"<a href='{TOKEN_UNSUBSCRIBE_URL}'>Unsubscribe</a></mj-text></mj-column></mj-section>"
    )
    try:
        from mjml import mjml2html
    except ImportError:  # pragma: no cover - mjml-python is a project dependency
        mjml2html = None
    pad = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 4
    count = 10
    html = ""
    for _ in range(12):
        body = "".join(story.format(i=i, pad=pad) for i in range(count))
        preview = f"<mj-preview>Morning, {TOKEN_FIRST_NAME}</mj-preview>"
        source = f"<mjml><mj-body>{preview}{body}{footer}</mj-body></mjml>"
        if mjml2html is not None:
            html = mjml2html(source, disable_comments=True, fonts={})
        else:
            html = source
        if len(html.encode()) >= target_bytes:
            break
        count = max(count + 1, int(count * target_bytes / max(1, len(html.encode()))) + 1)
    text_lines = [f"Good morning, {TOKEN_FIRST_NAME}!", ""]
    for i in range(count):
        text_lines += [f"Headline number {i}: council approves the caf\u00e9 plan", pad.strip(), ""]
    text_lines += [f"Preferences: {TOKEN_PREFERENCES_URL}", f"Unsubscribe: {TOKEN_UNSUBSCRIBE_URL}", ""]
    return html, "\n".join(text_lines)


def recipients(n: int) -> list[Recipient]:
    names = ["Alice Example", "", "Jos\u00e9 \u00c5lvarez", "Zo\u00eb O'Brien", "\u5f20\u4f1f", "Bob"]
    out = []
    for i in range(1, n + 1):
        token = f"WzE{i:05d}LDFd.RBRrxa7khQEOlUogQROLKh5lHrY"
        out.append(
            Recipient(
                i,
                f"reader{i}@example.com",
                names[i % len(names)],
                f"https://news.example.com/unsubscribe/{token}",
                f"https://news.example.com/preferences/{token}",
            )
        )
    return out


def naive(html: str, text: str, r: Recipient) -> bytes:
    first = (r.name.split() or ["there"])[0]
    values = {
        TOKEN_UNSUBSCRIBE_URL: r.unsubscribe_url,
        TOKEN_PREFERENCES_URL: r.preferences_url,
        TOKEN_FIRST_NAME: first,
    }
    h, t = html, text
    for k, v in values.items():
        h = h.replace(k, htmllib.escape(v, quote=True))
        t = t.replace(k, v)
    m = EmailMessage(policy=NAIVE_POLICY)
    m["From"] = formataddr(("The Morning Briefing", "briefing@news.example.com"))
    m["To"] = formataddr((r.name, r.email)) if r.name else r.email
    m["Subject"] = "Your briefing for Saturday"
    m["Date"] = format_datetime(WHEN)
    m["Message-ID"] = f"<2026-11-28.{r.subscriber_id}@news.example.com>"
    m["List-Id"] = "The Morning Briefing <morning.news.example.com>"
    m["List-Unsubscribe"] = (
        f"<{r.unsubscribe_url}>, <mailto:unsubscribe@news.example.com?subject=unsubscribe>"
    )
    m["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    m.set_content(t)
    m.add_alternative(h, subtype="html")
    return m.as_bytes()


def per_call_us(fn: Callable[[Recipient], bytes], people: list[Recipient]) -> float:
    started = time.perf_counter()
    for r in people:
        fn(r)
    return (time.perf_counter() - started) / len(people) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--recipients", type=int, default=400)
    args = parser.parse_args()

    html, text = edition()
    people = recipients(args.recipients)
    few = people[: max(10, args.recipients // 20)]  # the slow paths get fewer readers per round

    t0 = time.perf_counter()
    template = MessageTemplate(
        from_name="The Morning Briefing",
        from_address="briefing@news.example.com",
        subject="Your briefing for Saturday",
        html=html,
        text=text,
        list_id="morning.news.example.com",
        unsubscribe_mailto="unsubscribe@news.example.com",
        message_id_domain="news.example.com",
        edition_key="2026-11-28",
    )
    template_ms = (time.perf_counter() - t0) * 1e3

    def pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    rsa_pem = pem(rsa.generate_private_key(65537, 2048))
    rsa_signer = DkimSigner(rsa_pem, "brief", "news.example.com", "rsa-sha256")
    ed_signer = DkimSigner(
        pem(ed25519.Ed25519PrivateKey.generate()), "brief", "news.example.com", "ed25519-sha256"
    )

    def fast(r: Recipient) -> bytes:
        return template.render(r, date=WHEN)

    def naive_dkimpy(r: Recipient) -> bytes:
        raw = naive(html, text, r)
        d = dkim.DKIM(raw)
        d.should_sign.add(b"list-unsubscribe-post")
        return d.sign(b"brief", b"news.example.com", rsa_pem, canonicalize=(b"relaxed", b"simple")) + raw

    cases: dict[str, tuple[Callable[[Recipient], bytes], list[Recipient]]] = {
        "fast": (fast, people),
        "naive": (lambda r: naive(html, text, r), few),
        "fast_dkim_rsa2048": (lambda r: rsa_signer.sign(fast(r), now=WHEN), few),
        "fast_dkim_ed25519": (lambda r: ed_signer.sign(fast(r), now=WHEN), few),
        "naive_dkimpy_rsa2048": (naive_dkimpy, few[:10]),
    }
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.rounds):  # interleaved, so drift hits every case alike
        for name, (fn, group) in cases.items():
            samples[name].append(per_call_us(fn, group))
    medians = {k: round(statistics.median(v), 1) for k, v in samples.items()}

    # Line lengths over every fast-path message (signed ones too).
    max_body = max_header = 0
    long_header_lines = 0
    outputs = [fast(r) for r in people] + [rsa_signer.sign(fast(r), now=WHEN) for r in few]
    for raw in outputs:
        head, _, body = raw.partition(b"\r\n\r\n")
        max_body = max(max_body, max(len(line) for line in body.split(b"\r\n")))
        for line in head.split(b"\r\n"):
            max_header = max(max_header, len(line))
            long_header_lines += len(line) > 76
    sample = fast(people[0])
    naive_sample = naive(html, text, people[0])

    print(
        json.dumps(
            {
                "benchmark": "message_bytes",
                "cores": os.cpu_count(),
                "python": platform.python_version(),
                "html_bytes": len(html.encode()),
                "text_bytes": len(text.encode()),
                "message_bytes": len(sample),
                "naive_message_bytes": len(naive_sample),
                "naive_max_line": max(len(x) for x in naive_sample.split(b"\n")),
                "template_build_ms": round(template_ms, 2),
                "us_per_recipient": medians,
                "speedup_vs_naive": round(medians["naive"] / medians["fast"], 1),
                "dkim_rsa_speedup_vs_dkimpy": round(
                    medians["naive_dkimpy_rsa2048"] / medians["fast_dkim_rsa2048"], 1
                ),
                "target_us": 50,
                "max_line": max(max_body, max_header),
                "max_body_line": max_body,
                "max_header_line": max_header,
                "header_lines_over_76": long_header_lines,
                "note": "header lines over 76 are unfoldable List-Unsubscribe URIs (RFC 2369 forbids "
                "whitespace inside <...>); dkimpy ed25519 baseline needs PyNaCl",
                "recipients": args.recipients,
                "rounds": args.rounds,
            }
        )
    )


if __name__ == "__main__":
    main()
