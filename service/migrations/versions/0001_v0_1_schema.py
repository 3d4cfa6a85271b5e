"""The v0.1 job store: jobs, deliveries, instances, audit, leases.

Stores made before migrations existed were made by `create_all` and hold some or all of these
tables: each is created only where missing, so such a store upgrades in place.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def _missing(table: str) -> bool:
    return not sa.inspect(op.get_bind()).has_table(table)


def upgrade() -> None:
    if _missing("jobs"):
        op.create_table(
            "jobs",
            sa.Column("id", sa.String(32), primary_key=True),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("progress", sa.Float(), nullable=False),
            sa.Column("source", sa.String(16), nullable=False),
            sa.Column("created_at", UTC_TIME, nullable=False),
            sa.Column("started_at", UTC_TIME, nullable=True),
            sa.Column("finished_at", UTC_TIME, nullable=True),
            sa.Column("error", sa.Text(), nullable=True),
            sa.Column("study_instance_uid", sa.String(64), nullable=True),
            sa.Column("series_instance_uid", sa.String(64), nullable=True),
            sa.Column("instances", sa.Integer(), nullable=False),
            sa.Column("pa_path", sa.Text(), nullable=True),
            sa.Column("lateral_path", sa.Text(), nullable=True),
            sa.Column("notes_json", sa.Text(), nullable=False),
            sa.Column("model", sa.String(128), nullable=True),
        )
        op.create_index("ix_jobs_status", "jobs", ["status"])
        op.create_index("ix_jobs_created_at", "jobs", ["created_at"])
        op.create_index("ix_jobs_study_instance_uid", "jobs", ["study_instance_uid"])
    if _missing("deliveries"):
        op.create_table(
            "deliveries",
            sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id"), primary_key=True),
            sa.Column("destination", sa.String(128), primary_key=True),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("last_status", sa.Text(), nullable=True),
        )
    if _missing("instances"):
        op.create_table(
            "instances",
            sa.Column("sop_instance_uid", sa.String(64), primary_key=True),
            sa.Column("study_instance_uid", sa.String(64), nullable=False),
            sa.Column("family", sa.String(8), nullable=False),
            sa.Column("path", sa.Text(), nullable=False),
            sa.Column("received_at", UTC_TIME, nullable=False),
            sa.Column("calling_ae", sa.String(16), nullable=True),
            sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id"), nullable=True),
        )
        op.create_index("ix_instances_study_instance_uid", "instances", ["study_instance_uid"])
        op.create_index("ix_instances_job_id", "instances", ["job_id"])
    if _missing("audit"):
        op.create_table(
            "audit",
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("at", UTC_TIME, nullable=False),
            sa.Column("event", sa.String(32), nullable=False),
            sa.Column("job_id", sa.String(32), nullable=True),
            sa.Column("detail", sa.Text(), nullable=False),
        )
        op.create_index("ix_audit_at", "audit", ["at"])
        op.create_index("ix_audit_event", "audit", ["event"])
        op.create_index("ix_audit_job_id", "audit", ["job_id"])
    if _missing("leases"):
        op.create_table(
            "leases",
            sa.Column("job_id", sa.String(32), primary_key=True),
            sa.Column("holder", sa.String(64), nullable=False),
            sa.Column("renewed_at", UTC_TIME, nullable=False),
        )
        op.create_index("ix_leases_renewed_at", "leases", ["renewed_at"])


def downgrade() -> None:
    for table in ("leases", "audit", "instances", "deliveries", "jobs"):
        op.drop_table(table)
