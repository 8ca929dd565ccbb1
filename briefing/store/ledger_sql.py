"""The delivery ledger's hot-path statements: lease a batch, look a reader up, record each result.

`deliveries.LedgerWriter` runs them on the driver's cursor, once per message, with the "?"
placeholders turned into the driver's own.
"""

# A reader is wanted while both their address and their subscription to the edition's newsletter
# are active: one who left this newsletter only is skipped like one who left everything.
_CLAIM_COLUMNS = (
    "SELECT d.id, d.subscriber_id, d.attempts, d.was_ambiguous, s.email, s.name, "
    "CASE WHEN u.status = 'active' THEN s.status ELSE 'left' END, "
    "s.token_version, d.variant, e.newsletter_id "
    "FROM delivery d JOIN subscriber s ON s.id = d.subscriber_id JOIN edition e ON e.id = d.edition_id "
    "LEFT JOIN subscription u ON u.subscriber_id = d.subscriber_id AND u.newsletter_id = e.newsletter_id "
)
WRITER_SQL = {
    # From where this writer's last batch ended: the rows before it are mostly sent, and
    # PostgreSQL may walk the primary key filtering them one by one (100 ms a claim at 1M rows).
    "due_pending": _CLAIM_COLUMNS
    + "WHERE d.edition_id = ? AND d.status = 'pending' AND d.id > ? ORDER BY d.id LIMIT ?",
    # Rows put back behind that point (released, recovered, resent), once nothing is left ahead.
    "due_pending_behind": _CLAIM_COLUMNS
    + "WHERE d.edition_id = ? AND d.status = 'pending' AND d.id <= ? ORDER BY d.id LIMIT ?",
    "due_deferred": _CLAIM_COLUMNS
    + "WHERE d.edition_id = ? AND d.status = 'deferred' AND d.next_attempt_at <= ? ORDER BY d.id LIMIT ?",
    "reader_status": "SELECT CASE WHEN u.status = 'active' THEN s.status ELSE 'left' END "
    "FROM subscriber s LEFT JOIN subscription u "
    "ON u.subscriber_id = s.id AND u.newsletter_id = ? WHERE s.id = ?",
    "skip": "UPDATE delivery SET status = 'skipped', smtp_reply = ?, lease_owner = '', lease_until = NULL, "
    "updated_at = ? WHERE id = ?",
    "claim": "UPDATE delivery SET status = 'claimed', lease_owner = ?, lease_until = ?, updated_at = ? "
    "WHERE id = ?",
    "sent": "UPDATE delivery SET status = 'sent', attempts = attempts + 1, smtp_code = ?, smtp_reply = ?, "
    "message_id = ?, sent_at = ?, lease_owner = '', lease_until = NULL, next_attempt_at = NULL, "
    "updated_at = ? WHERE id = ?",
    "deferred": "UPDATE delivery SET status = 'deferred', attempts = attempts + 1, smtp_code = ?, "
    "smtp_reply = ?, next_attempt_at = ?, lease_owner = '', lease_until = NULL, updated_at = ? WHERE id = ?",
    "failed": "UPDATE delivery SET status = 'failed', attempts = attempts + 1, smtp_code = ?, "
    "smtp_reply = ?, lease_owner = '', lease_until = NULL, next_attempt_at = NULL, updated_at = ? "
    "WHERE id = ?",
    "ambiguous": "UPDATE delivery SET status = ?, attempts = attempts + 1, smtp_reply = ?, "
    "was_ambiguous = TRUE, lease_owner = '', lease_until = NULL, next_attempt_at = NULL, updated_at = ? "
    "WHERE id = ?",
    "release": "UPDATE delivery SET status = 'pending', lease_owner = '', lease_until = NULL, updated_at = ? "
    "WHERE id = ? AND status = 'claimed'",
    "hold": "UPDATE delivery SET status = 'deferred', smtp_code = ?, smtp_reply = ?, next_attempt_at = NULL, "
    "lease_owner = '', lease_until = NULL, updated_at = ? WHERE id = ?",
    # A held refusal: deferred with no next attempt (see LedgerWriter.hold); only such rows are settled.
    "settle_failed": "UPDATE delivery SET status = 'failed', attempts = attempts + 1, smtp_reply = ?, "
    "updated_at = ? WHERE id = ? AND status = 'deferred' AND next_attempt_at IS NULL",
    "settle_deferred": "UPDATE delivery SET attempts = attempts + 1, next_attempt_at = ?, updated_at = ? "
    "WHERE id = ? AND status = 'deferred' AND next_attempt_at IS NULL",
    "release_held": "UPDATE delivery SET status = 'pending', smtp_reply = ?, updated_at = ? "
    "WHERE id = ? AND status = 'deferred' AND next_attempt_at IS NULL",
    "bounce": "UPDATE subscriber SET status = 'bounced', updated_at = ? WHERE id = ? AND status = 'active'",
    "soft_bounce": "UPDATE subscriber SET soft_bounce_count = soft_bounce_count + 1, "
    "status = CASE WHEN soft_bounce_count + 1 >= ? AND status = 'active' THEN 'bounced' ELSE status END, "
    "updated_at = ? WHERE id = ?",
}
