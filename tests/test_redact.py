import logging

from revopipe.config.redact import MASK, RedactingFilter, Redactor


def test_redactor_masks_values_and_secret_keys() -> None:
    r = Redactor(["hunter2-secret", "ab"])  # too short to mask by value
    assert r.text("token=hunter2-secret!") == f"token={MASK}!"
    assert r.text("ab cd") == "ab cd"
    cleaned = r.mapping(
        {
            "url": "https://x/?k=hunter2-secret",
            "api_key": "zzz",
            "nested": {"password": "p", "n": 1},
            "list": ["hunter2-secret"],
        }
    )
    assert cleaned == {
        "url": f"https://x/?k={MASK}",
        "api_key": MASK,
        "nested": {"password": MASK, "n": 1},
        "list": [MASK],
    }


def test_logging_filter_masks_secrets_in_records() -> None:
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Keep()
    handler.addFilter(RedactingFilter(Redactor(["s3cr3t-value"])))
    log = logging.getLogger("test.redact")
    log.addHandler(handler)
    log.propagate = False
    log.warning("connecting with %s to %s", "s3cr3t-value", "host")
    assert records == [f"connecting with {MASK} to host"]
