# One image per service: docker build --build-arg SERVICE=case-api -t aftersales/case-api .
FROM python:3.11-slim AS build
ARG SERVICE=case-api
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY shared shared
COPY services services
RUN uv sync --frozen --no-dev --package "$SERVICE" --no-editable

FROM python:3.11-slim
ARG SERVICE=case-api
ENV PATH=/app/.venv/bin:$PATH SERVICE=$SERVICE DATA_DIR=/data
RUN useradd --system --uid 10001 --home /app app && mkdir /data && chown app /data
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
COPY --from=build /app/services/$SERVICE /app/services/$SERVICE
USER app
CMD ["sh", "-c", "exec $SERVICE serve"]
