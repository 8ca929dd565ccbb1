"""several newsletters

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 16:59:29.319173

A database of one newsletter becomes the first of several: one newsletter row named from the
settings it ran with (its blank fields keep inheriting them), every subscriber subscribed to it,
every edition, story and alert keyed to it. Editions become unique by (newsletter, date, kind), so
a special edition can share its date with the regular one. Ledger rows, tokens and ids are kept
as they were, so every link in an email already sent keeps working.
"""
import re
import unicodedata
from datetime import UTC
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel
import briefing.models


revision: str = '0009'
down_revision: Union[str, None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def _first_slug() -> str:
    """The first newsletter's slug, from the name the settings gave it (briefing.db.upgrade passes it)."""
    name = str(op.get_context().config.attributes.get("newsletter_name") or "") if op.get_context().config else ""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:40].strip("-")
    return slug or "briefing"


def _moment(sqlite: bool) -> sa.ColumnElement:
    """When the upgrade runs: the clock its caller passed to briefing.db.upgrade, else the database's."""
    config = op.get_context().config
    given = config.attributes.get("now") if config is not None else None
    if given is None:
        return sa.func.current_timestamp()
    moment = given.astimezone(UTC)
    return sa.literal(moment.replace(tzinfo=None) if sqlite else moment, sa.DateTime(timezone=True))


def _carry_forward() -> None:
    bind = op.get_bind()
    stamp = _moment(bind.dialect.name == "sqlite")
    text_columns = ("name", "sender_name", "sender_address", "reply_to", "list_id", "send_days",
                    "send_time", "timezone", "brand_colour", "accent_colour", "logo_url", "template_set")
    newsletter = sa.table(
        "newsletter",
        sa.column("id", sa.Integer),
        sa.column("slug", sa.String),
        *(sa.column(c, sa.String) for c in text_columns),
        sa.column("section_order", sa.JSON),
        sa.column("standing", sa.JSON),
        sa.column("sections_optional", sa.Boolean),
        sa.column("archive", sa.String),
        sa.column("paused", sa.Boolean),
        sa.column("position", sa.Integer),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    bind.execute(sa.insert(newsletter).values(
        id=1, slug=_first_slug(), created_at=stamp, updated_at=stamp, section_order=[], standing={},
        sections_optional=False, archive="web", paused=False, position=0,
        **{c: "" for c in text_columns},
    ))
    # Every reader of the one newsletter reads it still; their address-level status is unchanged.
    subscriber = sa.table("subscriber", sa.column("id", sa.Integer), sa.column("created_at", sa.DateTime))
    columns = ["subscriber_id", "newsletter_id", "status", "excluded_sections", "variant", "specials",
               "created_at", "updated_at"]
    subscription = sa.table("subscription", *(sa.column(c) for c in columns))
    source = sa.select(
        subscriber.c.id,
        sa.literal_column("1"),
        sa.literal_column("'active'"),
        sa.literal_column("'[]'"),  # inline, so PostgreSQL reads it as the column's json
        sa.literal_column("''"),
        sa.true(),
        subscriber.c.created_at,
        stamp,
    )
    bind.execute(sa.insert(subscription).from_select(columns, source))
    if bind.dialect.name == "postgresql":
        bind.execute(sa.text("SELECT setval(pg_get_serial_sequence('newsletter', 'id'), 1)"))


def upgrade() -> None:
    op.create_table('newsletter',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('slug', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('sender_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('sender_address', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('reply_to', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('list_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('send_days', sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
    sa.Column('send_time', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('timezone', sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
    sa.Column('section_order', sa.JSON(), nullable=False),
    sa.Column('sections_optional', sa.Boolean(), nullable=False),
    sa.Column('brand_colour', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('accent_colour', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('logo_url', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('standing', sa.JSON(), nullable=False),
    sa.Column('template_set', sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
    sa.Column('archive', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('paused', sa.Boolean(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('created_at', briefing.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', briefing.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('slug'),
    sqlite_autoincrement=True
    )
    op.create_table('sponsor_slot',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('newsletter_id', sa.Integer(), nullable=False),
    sa.Column('starts_on', sa.Date(), nullable=False),
    sa.Column('ends_on', sa.Date(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('text', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('url', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('image_url', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('label', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('paid', sa.Boolean(), nullable=False),
    sa.Column('created_at', briefing.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['newsletter_id'], ['newsletter.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sponsor_slot', schema=None) as batch_op:
        batch_op.create_index('ix_sponsor_slot_newsletter_dates', ['newsletter_id', 'starts_on', 'ends_on'], unique=False)

    op.create_table('subscription',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=False),
    sa.Column('newsletter_id', sa.Integer(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('excluded_sections', sa.JSON(), nullable=False),
    sa.Column('variant', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('specials', sa.Boolean(), nullable=False),
    sa.Column('created_at', briefing.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', briefing.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('unsubscribed_at', briefing.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['newsletter_id'], ['newsletter.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscriber.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('subscriber_id', 'newsletter_id', name='uq_subscription_subscriber_newsletter')
    )
    with op.batch_alter_table('subscription', schema=None) as batch_op:
        batch_op.create_index('ix_subscription_newsletter_status', ['newsletter_id', 'status'], unique=False)

    _carry_forward()
    op.create_table('edition_variant',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('edition_id', sa.Integer(), nullable=False),
    sa.Column('variant', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('html_template', sa.Text(), nullable=False),
    sa.Column('text_template', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['edition_id'], ['edition.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('edition_id', 'variant', name='uq_edition_variant')
    )
    with op.batch_alter_table('alert_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('newsletter_id', sa.Integer(), server_default='1', nullable=False))
        batch_op.drop_constraint(batch_op.f('uq_alert_state_edition_problem'), type_='unique')
        batch_op.create_unique_constraint('uq_alert_state_newsletter_edition_problem', ['newsletter_id', 'edition_date', 'problem'])

    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.add_column(sa.Column('variant', sqlmodel.sql.sqltypes.AutoString(length=2000), server_default='', nullable=False))

    # SQLite recreates `edition` to change its constraints, and dropping the old table would delete
    # (or un-link) the rows that reference it: the ledger, the senders and the bounce events are set
    # aside for the length of the recreate and put back unchanged (as 0004 does for subscribers).
    kept = ("delivery", "sender", "bounce_event")
    if op.get_bind().dialect.name == "sqlite":
        for table in kept:
            op.execute(f"CREATE TEMP TABLE _briefing_keep_{table} AS SELECT * FROM {table}")
            op.execute(f"DELETE FROM {table}")
    # The old UNIQUE(edition_date) had no name: PostgreSQL called it edition_edition_date_key, and
    # SQLite's batch copy names an unnamed one through the convention so that it can be left out.
    found = [
        u["name"]
        for u in sa.inspect(op.get_bind()).get_unique_constraints("edition")
        if u["column_names"] == ["edition_date"]
    ]
    old_unique = (found[0] if found else None) or "uq_edition_edition_date"
    with op.batch_alter_table(
        'edition', schema=None, naming_convention={"uq": "uq_%(table_name)s_%(column_0_name)s"}
    ) as batch_op:
        batch_op.add_column(sa.Column('newsletter_id', sa.Integer(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=20), server_default='regular', nullable=False))
        batch_op.drop_constraint(old_unique, type_='unique')
        batch_op.create_index(batch_op.f('ix_edition_edition_date'), ['edition_date'], unique=False)
        batch_op.create_unique_constraint('uq_edition_newsletter_date_kind', ['newsletter_id', 'edition_date', 'kind'])
        batch_op.create_foreign_key('fk_edition_newsletter', 'newsletter', ['newsletter_id'], ['id'], ondelete='CASCADE')
    if op.get_bind().dialect.name == "sqlite":
        for table in kept:
            op.execute(f"INSERT INTO {table} SELECT * FROM _briefing_keep_{table}")
            op.execute(f"DROP TABLE _briefing_keep_{table}")

    with op.batch_alter_table('story', schema=None) as batch_op:
        batch_op.add_column(sa.Column('newsletter_id', sa.Integer(), server_default='1', nullable=False))
        batch_op.create_index(batch_op.f('ix_story_newsletter_id'), ['newsletter_id'], unique=False)
        batch_op.create_foreign_key('fk_story_newsletter', 'newsletter', ['newsletter_id'], ['id'], ondelete='CASCADE')


def downgrade() -> None:
    # Only a database of one newsletter and no special editions goes back (UNIQUE(edition_date)).
    with op.batch_alter_table('story', schema=None) as batch_op:
        batch_op.drop_constraint('fk_story_newsletter', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_story_newsletter_id'))
        batch_op.drop_column('newsletter_id')

    with op.batch_alter_table('edition', schema=None) as batch_op:
        batch_op.drop_constraint('fk_edition_newsletter', type_='foreignkey')
        batch_op.drop_constraint('uq_edition_newsletter_date_kind', type_='unique')
        batch_op.drop_index(batch_op.f('ix_edition_edition_date'))
        batch_op.drop_column('kind')
        batch_op.drop_column('newsletter_id')
        batch_op.create_unique_constraint('edition_edition_date_key', ['edition_date'])

    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_column('variant')

    with op.batch_alter_table('alert_state', schema=None) as batch_op:
        batch_op.drop_constraint('uq_alert_state_newsletter_edition_problem', type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_alert_state_edition_problem'), ['edition_date', 'problem'])
        batch_op.drop_column('newsletter_id')

    op.drop_table('edition_variant')
    with op.batch_alter_table('subscription', schema=None) as batch_op:
        batch_op.drop_index('ix_subscription_newsletter_status')

    op.drop_table('subscription')
    with op.batch_alter_table('sponsor_slot', schema=None) as batch_op:
        batch_op.drop_index('ix_sponsor_slot_newsletter_dates')

    op.drop_table('sponsor_slot')
    op.drop_table('newsletter')
