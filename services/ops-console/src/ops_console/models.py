"""ops-console tables: staff accounts, their sessions, failed sign-ins. Times are stored in UTC."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel


class StaffAccount(SQLModel, table=True):
    """A person who works in the console."""

    __tablename__ = "staff_accounts"

    username: str = Field(primary_key=True, max_length=64)
    display_name: str = Field(max_length=100)
    password_hash: str = Field(max_length=200)  # Argon2id, with its parameters and salt
    roles: list[str] = Field(sa_column=Column(JSON, nullable=False))  # support, ops, admin
    shops: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))  # None: every shop
    disabled_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class StaffSession(SQLModel, table=True):
    """A signed-in browser. The cookie holds a random id; only its SHA-256 is kept."""

    __tablename__ = "staff_sessions"

    id_hash: str = Field(primary_key=True, max_length=64)
    username: str = Field(index=True, max_length=64)
    csrf_token: str = Field(max_length=64)
    created_at: datetime
    last_seen_at: datetime


class LoginFailure(SQLModel, table=True):
    """A refused sign-in, for the lockout (the username as typed, whether it exists or not)."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_username_failed_at", "username", "failed_at"),)

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64)
    failed_at: datetime
