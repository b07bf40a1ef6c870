import { App as AntApp, Button, Form, Input, Select, Space, Table, Tag, Tooltip, Typography } from "antd";
import { useCallback, useEffect, useMemo, useState } from "react";
import { Link } from "react-router-dom";
import { api, caseApi, type Page } from "../api";
import { RefusalView } from "../components/RefusalView";
import { SlaTags } from "../components/SlaTags";
import {
  assigneeBody,
  assigneeParam,
  assigneeText,
  bulkClosable,
  FINAL_STATUSES,
  queueRows,
  takeChoice,
  type AssigneeFilter,
  type CaseItem,
  type FollowUpRow,
  type QueueRow,
} from "../domain";
import { useI18n, valuesOf } from "../i18n";
import { refusalLine, refusalOf } from "../refusal";
import { useSession } from "../session";

interface Filters {
  status?: string;
  remedy?: string;
  reason?: string;
  shop_id?: string;
  carrier?: string;
  assignee?: AssigneeFilter;
}

const ACTIVE = "__active__";

export function QueuePage() {
  const { t, label, lang } = useI18n();
  const { has, user } = useSession();
  const { message } = AntApp.useApp();
  const [draft, setDraft] = useState<Filters>({ status: ACTIVE });
  const [filters, setFilters] = useState<Filters>(draft);
  const [items, setItems] = useState<CaseItem[]>([]);
  const [followUps, setFollowUps] = useState<FollowUpRow[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [selected, setSelected] = useState<string[]>([]);
  const [now, setNow] = useState(() => Date.now());

  const load = useCallback(
    async (after: string | null = null) => {
      setLoading(true);
      setError(null);
      try {
        const status = filters.status === ACTIVE ? undefined : filters.status;
        const assignee = assigneeParam(filters.assignee, user.username);
        const query = { ...filters, status, assignee, cursor: after, limit: 200 };
        const [page, register] = await Promise.all([
          api.get<Page<CaseItem>>(caseApi("/v1/cases"), query),
          after
            ? Promise.resolve(null)
            : api.get<{ items: FollowUpRow[] }>(caseApi("/v1/registers/logistics-follow-up"), { limit: 1000 }),
        ]);
        const fresh = filters.status === ACTIVE ? page.items.filter((c) => !FINAL_STATUSES.has(c.status)) : page.items;
        setItems((old) => (after ? [...old, ...fresh] : fresh));
        if (register) setFollowUps(register.items);
        setCursor(page.next_cursor);
        setNow(Date.now());
      } catch (refused) {
        setError(refused);
      } finally {
        setLoading(false);
      }
    },
    [filters, user.username],
  );

  useEffect(() => {
    void load();
  }, [load]);

  useEffect(() => {
    const typed = setTimeout(() => setFilters(draft), 300); // one request when the typing stops
    return () => clearTimeout(typed);
  }, [draft]);

  useEffect(() => {
    const tick = setInterval(() => setNow(Date.now()), 60_000);
    return () => clearInterval(tick);
  }, []);

  const rows = useMemo(() => queueRows(items, followUps, now), [items, followUps, now]);

  const closeSelected = async () => {
    let ok = 0;
    const refusals: string[] = [];
    for (const row of rows.filter((r) => selected.includes(r.item.id) && bulkClosable(r.item))) {
      try {
        await api.post(caseApi(`/v1/cases/${encodeURIComponent(row.item.id)}/actions/close`), {
          expected_version: row.item.version,
        });
        ok += 1;
      } catch (refused) {
        refusals.push(`${row.item.id}: ${refusalLine(refusalOf(refused, lang))}`);
      }
    }
    message.info(t("bulk_result", { ok, failed: refusals.length }));
    refusals.forEach((line) => message.error(line, 8));
    setSelected([]);
    await load();
  };

  const takeOrRelease = async (item: CaseItem) => {
    const choice = takeChoice(item, user.username, has("ops"));
    try {
      await api.put(caseApi(`/v1/cases/${encodeURIComponent(item.id)}/assignee`), assigneeBody(choice, user.username, item.version));
      message.success(`${item.id} · ${t(choice.kind === "release" ? "released" : "taken")}`);
    } catch (refused) {
      message.error(`${item.id}: ${refusalLine(refusalOf(refused, lang))}`, 8);
    }
    await load();
  };

  const options = (group: string) => valuesOf(group).map((value) => ({ value, label: label(group, value) }));
  const assigneeOptions = [
    { value: "mine", label: t("assignee_mine") },
    { value: "unassigned", label: t("assignee_unassigned") },
  ];

  return (
    <Space direction="vertical" style={{ width: "100%" }} size="middle">
      <Typography.Title level={3} style={{ margin: 0 }}>
        {t("queue")}
      </Typography.Title>
      <Form layout="inline" aria-label={t("queue")} onValuesChange={(_, all: Filters) => setDraft(all)} initialValues={draft}>
        <Form.Item label={t("status")} name="status">
          <Select
            style={{ width: 150 }}
            allowClear
            options={[{ value: ACTIVE, label: `${t("all")} (${t("open")})` }, ...options("status")]}
            placeholder={t("all")}
          />
        </Form.Item>
        <Form.Item label={t("remedy")} name="remedy">
          <Select style={{ width: 140 }} allowClear options={options("remedy")} placeholder={t("all")} />
        </Form.Item>
        <Form.Item label={t("reason")} name="reason">
          <Select style={{ width: 150 }} allowClear options={options("reason")} placeholder={t("all")} />
        </Form.Item>
        <Form.Item label={t("shop")} name="shop_id">
          <Input style={{ width: 120 }} allowClear />
        </Form.Item>
        <Form.Item label={t("carrier")} name="carrier">
          <Input style={{ width: 100 }} allowClear placeholder="SF" />
        </Form.Item>
        <Form.Item label={t("assignee")} name="assignee">
          <Select style={{ width: 110 }} allowClear options={assigneeOptions} placeholder={t("all")} />
        </Form.Item>
        <Button onClick={() => void load()}>{t("refresh")}</Button>
      </Form>
      {error !== null && <RefusalView error={error} />}
      {has("support") && (
        <Space>
          <Tooltip title={t("bulk_close_hint")}>
            <Button disabled={!selected.length} onClick={() => void closeSelected()}>
              {t("bulk_close")}
            </Button>
          </Tooltip>
          {selected.length > 0 && <span>{t("bulk_selected", { n: selected.length })}</span>}
        </Space>
      )}
      <Table<QueueRow>
        rowKey={(row) => row.item.id}
        loading={loading}
        dataSource={rows}
        size="small"
        pagination={{ pageSize: 20, showSizeChanger: false }}
        scroll={{ x: 1100 }}
        rowSelection={
          has("support")
            ? {
                selectedRowKeys: selected,
                onChange: (keys) => setSelected(keys as string[]),
                getCheckboxProps: (row) => ({ disabled: !bulkClosable(row.item), "aria-label": row.item.id }),
              }
            : undefined
        }
        columns={[
          {
            title: t("case"),
            key: "id",
            render: (_, row) => <Link to={`/cases/${encodeURIComponent(row.item.id)}`}>{row.item.id}</Link>,
          },
          { title: t("order"), key: "order", render: (_, row) => row.item.order_id },
          { title: t("shop"), key: "shop", render: (_, row) => row.item.shop_id },
          { title: t("status"), key: "status", render: (_, row) => <Tag>{label("status", row.item.status)}</Tag> },
          { title: t("remedy"), key: "remedy", render: (_, row) => label("remedy", row.item.remedy) },
          { title: t("reason"), key: "reason", render: (_, row) => label("reason", row.item.reason) },
          { title: t("amount"), key: "amount", align: "right", render: (_, row) => row.item.amount ?? "—" },
          { title: t("assignee"), key: "assignee", render: (_, row) => assigneeText(row.item.assignee) ?? "—" },
          { title: t("sla"), key: "sla", width: 300, render: (_, row) => <SlaTags clocks={row.clocks} /> },
          {
            title: t("created_at"),
            key: "created",
            render: (_, row) => new Date(row.item.created_at).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB"),
          },
          {
            title: t("actions"),
            key: "take",
            render: (_, row) => (
              <Space>
                <Link to={`/cases/${encodeURIComponent(row.item.id)}`} aria-label={`${t("open")} ${row.item.id}`}>
                  {t("open")}
                </Link>
                {has("support", "ops") && (
                  <TakeButton row={row} username={user.username} canReassign={has("ops")} onClick={takeOrRelease} />
                )}
              </Space>
            ),
          },
        ]}
      />
      {cursor && (
        <Button onClick={() => void load(cursor)} loading={loading}>
          {t("load_more")}
        </Button>
      )}
    </Space>
  );
}

function TakeButton(props: { row: QueueRow; username: string; canReassign: boolean; onClick: (item: CaseItem) => Promise<void> }) {
  const { t } = useI18n();
  const { row, username, canReassign, onClick } = props;
  const choice = takeChoice(row.item, username, canReassign);
  if (choice.kind === "closed") return null;
  if (choice.kind === "taken") {
    return (
      <Tooltip title={t("taken_by", { name: choice.by })}>
        <Button size="small" disabled aria-label={`${t("take")} ${row.item.id}`}>
          {t("take")}
        </Button>
      </Tooltip>
    );
  }
  const word = t(choice.kind === "release" ? "release_case" : "take");
  return (
    <Button size="small" aria-label={`${word} ${row.item.id}`} onClick={() => void onClick(row.item)}>
      {word}
    </Button>
  );
}
