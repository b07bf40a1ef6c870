import { App as AntApp, Button, Card, DatePicker, Input, Modal, Space, Table, Tabs, Tag, Typography } from "antd";
import dayjs, { type Dayjs } from "dayjs";
import { useCallback, useEffect, useState } from "react";
import { api, caseApi, payoutApi, type Page } from "../api";
import { Downloads } from "../components/Downloads";
import { RefusalView } from "../components/RefusalView";
import { useI18n } from "../i18n";
import { useSession } from "../session";

interface Task {
  id: string;
  order_id: string;
  shop_id: string;
  case_id: string | null;
  reason: string;
  amount: string;
  payee: { name?: string; alipay_account?: string };
  status: string;
  version: number;
  created_at: string;
}

interface Payout {
  id: string;
  cashback_task_id: string;
  order_id: string;
  shop_id: string;
  amount: string;
  payee_name: string | null;
  status: string;
  batch_id: string | null;
  hold_reason: string | null;
  approved_at: string | null;
  paid_at: string | null;
  failure_code: string | null;
}

interface Batch {
  id: string;
  trigger: string;
  status: string;
  count: number;
  total: string;
  paid_total: string;
  created_at: string;
}

type Decision = { kind: "task"; id: string; action: "approve" | "reject"; version: number } | { kind: "payout"; id: string; action: "release" | "cancel" };

function useList<T>(path: string, query: Record<string, string | number | undefined>, enabled = true) {
  const [items, setItems] = useState<T[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(false);
  const key = JSON.stringify(query);
  const load = useCallback(async () => {
    if (!enabled) return;
    setLoading(true);
    setError(null);
    try {
      setItems((await api.get<Page<T>>(path, JSON.parse(key))).items);
    } catch (refused) {
      setError(refused);
    } finally {
      setLoading(false);
    }
  }, [path, key, enabled]);
  useEffect(() => {
    void load();
  }, [load]);
  return { items, error, loading, load };
}

export function CashbackPage() {
  const { t, label, lang } = useI18n();
  const { has } = useSession();
  const { message } = AntApp.useApp();
  const [day, setDay] = useState<Dayjs>(dayjs());
  const [decision, setDecision] = useState<Decision | null>(null);
  const [note, setNote] = useState("");
  const [refusal, setRefusal] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const when = (at: string | null) => (at ? new Date(at).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB") : "—");

  const verification = useList<Task>(caseApi("/v1/cashback-tasks"), { status: "pending_verification", limit: 200 });
  const payouts = useList<Payout>(payoutApi("/v1/payouts"), { limit: 200 });
  const held = useList<Payout>(payoutApi("/v1/payouts"), { status: "held_for_review", limit: 200 });
  const batches = useList<Batch>(payoutApi("/v1/batches"), { limit: 100 }, has("ops"));
  const [register, setRegister] = useState<{ items: Record<string, unknown>[] } | null>(null);
  const [registerError, setRegisterError] = useState<unknown>(null);
  const date = day.format("YYYY-MM-DD");

  useEffect(() => {
    setRegisterError(null);
    api
      .get<{ items: Record<string, unknown>[] }>(payoutApi("/v1/registers/cashback"), { date })
      .then(setRegister)
      .catch(setRegisterError);
  }, [date]);

  const decide = async () => {
    if (!decision) return;
    setBusy(true);
    setRefusal(null);
    try {
      if (decision.kind === "task") {
        await api.post(caseApi(`/v1/cashback-tasks/${encodeURIComponent(decision.id)}/${decision.action}`), {
          expected_version: decision.version,
          ...(decision.action === "reject" && note ? { reason: note } : {}),
        });
        await verification.load();
      } else {
        await api.post(payoutApi(`/v1/payouts/${encodeURIComponent(decision.id)}/${decision.action}`), note ? { note } : undefined);
        await Promise.all([held.load(), payouts.load()]);
      }
      message.success(t("done"));
      setDecision(null);
      setNote("");
    } catch (refused) {
      setRefusal(refused);
    } finally {
      setBusy(false);
    }
  };

  const ask = (next: Decision) => {
    setRefusal(null);
    setNote("");
    setDecision(next);
  };

  const payoutColumns = [
    { title: "ID", dataIndex: "id" },
    { title: t("order"), dataIndex: "order_id" },
    { title: t("shop"), dataIndex: "shop_id" },
    { title: t("amount"), dataIndex: "amount", align: "right" as const },
    { title: t("payee"), dataIndex: "payee_name" },
    { title: t("status"), render: (_: unknown, p: Payout) => <Tag>{label("payout_status", p.status)}</Tag> },
  ];

  const tabs = [
    {
      key: "verification",
      label: t("verification"),
      children: (
        <>
          {verification.error !== null && <RefusalView error={verification.error} />}
          <Table<Task>
            size="small"
            rowKey="id"
            loading={verification.loading}
            dataSource={verification.items}
            columns={[
              { title: "ID", dataIndex: "id" },
              { title: t("order"), dataIndex: "order_id" },
              { title: t("case"), dataIndex: "case_id" },
              { title: t("reason"), render: (_, task) => label("reason", task.reason) },
              { title: t("amount"), dataIndex: "amount", align: "right" },
              { title: t("payee"), render: (_, task) => task.payee?.name ?? "—" },
              { title: t("created_at"), render: (_, task) => when(task.created_at) },
              {
                title: t("actions"),
                render: (_, task) => (
                  <Space>
                    <Button size="small" type="primary" disabled={!has("support")} onClick={() => ask({ kind: "task", id: task.id, action: "approve", version: task.version })}>
                      {t("approve")}
                    </Button>
                    <Button size="small" danger disabled={!has("support")} onClick={() => ask({ kind: "task", id: task.id, action: "reject", version: task.version })}>
                      {t("reject")}
                    </Button>
                  </Space>
                ),
              },
            ]}
          />
        </>
      ),
    },
    {
      key: "held",
      label: t("held"),
      children: (
        <>
          {held.error !== null && <RefusalView error={held.error} />}
          <Table<Payout>
            size="small"
            rowKey="id"
            loading={held.loading}
            dataSource={held.items}
            columns={[
              ...payoutColumns,
              { title: t("hold_reason"), dataIndex: "hold_reason" },
              {
                title: t("actions"),
                render: (_, p) => (
                  <Space>
                    <Button size="small" type="primary" disabled={!has("ops")} onClick={() => ask({ kind: "payout", id: p.id, action: "release" })}>
                      {t("release")}
                    </Button>
                    <Button size="small" danger disabled={!has("ops")} onClick={() => ask({ kind: "payout", id: p.id, action: "cancel" })}>
                      {t("cancel_payout")}
                    </Button>
                  </Space>
                ),
              },
            ]}
          />
        </>
      ),
    },
    {
      key: "payouts",
      label: t("payouts"),
      children: (
        <>
          {payouts.error !== null && <RefusalView error={payouts.error} />}
          <Table<Payout>
            size="small"
            rowKey="id"
            loading={payouts.loading}
            dataSource={payouts.items}
            scroll={{ x: 1000 }}
            columns={[
              ...payoutColumns,
              { title: t("batches"), dataIndex: "batch_id" },
              { title: t("paid_at"), render: (_, p) => when(p.paid_at) },
              { title: t("code"), dataIndex: "failure_code" },
            ]}
          />
          {has("ops") && (
            <Card size="small" title={t("batches")} style={{ marginTop: 16 }}>
              {batches.error !== null && <RefusalView error={batches.error} />}
              <Table<Batch>
                size="small"
                rowKey="id"
                loading={batches.loading}
                dataSource={batches.items}
                columns={[
                  { title: "ID", dataIndex: "id" },
                  { title: t("status"), dataIndex: "status" },
                  { title: t("count"), dataIndex: "count", align: "right" },
                  { title: t("total"), dataIndex: "total", align: "right" },
                  { title: t("paid_total"), dataIndex: "paid_total", align: "right" },
                  { title: t("created_at"), render: (_, b) => when(b.created_at) },
                ]}
              />
            </Card>
          )}
        </>
      ),
    },
    {
      key: "register",
      label: t("daily_register"),
      children: (
        <Space direction="vertical" style={{ width: "100%" }}>
          <Space wrap>
            <label>
              {t("date")}{" "}
              <DatePicker value={day} onChange={(value) => value && setDay(value)} allowClear={false} aria-label={t("date")} />
            </label>
            <Downloads path={payoutApi("/v1/registers/cashback")} name={`cashback-${date}`} query={{ date }} />
          </Space>
          {registerError !== null && <RefusalView error={registerError} />}
          <Table<Record<string, unknown>>
            size="small"
            rowKey={(row) => String(row.payout_id)}
            dataSource={register?.items ?? []}
            scroll={{ x: 1000 }}
            columns={[
              { title: t("paid_at"), render: (_, r) => when(r.paid_at as string | null) },
              { title: t("order"), dataIndex: "order_id" },
              { title: t("case"), dataIndex: "case_id" },
              { title: t("reason"), render: (_, r) => label("reason", r.reason as string) },
              { title: t("amount"), dataIndex: "amount", align: "right" },
              { title: t("payee"), dataIndex: "payee_name" },
              { title: t("batches"), dataIndex: "batch_id" },
            ]}
          />
          <Card size="small" title={t("cashback_tasks_register")} extra={<Downloads path={caseApi("/v1/registers/cashback")} name="cashback-tasks" />} />
          <Card size="small" title={t("retention_register")} extra={<Downloads path={caseApi("/v1/registers/retention")} name="retention" />} />
        </Space>
      ),
    },
  ];

  return (
    <Space direction="vertical" style={{ width: "100%" }} size="middle">
      <Typography.Title level={3} style={{ margin: 0 }}>
        {t("cashback")}
      </Typography.Title>
      <Tabs items={tabs} />
      <Modal
        open={decision !== null}
        title={decision ? `${t(decision.action === "cancel" ? "cancel_payout" : decision.action)} · ${decision.id}` : ""}
        okText={t("run")}
        cancelText={t("cancel")}
        confirmLoading={busy}
        onOk={() => void decide()}
        onCancel={() => setDecision(null)}
      >
        {decision && decision.action !== "approve" && (
          <label>
            {decision.action === "reject" ? t("reject_reason") : t("note")}
            <Input.TextArea rows={3} value={note} onChange={(e) => setNote(e.target.value)} />
          </label>
        )}
        {refusal !== null && <RefusalView error={refusal} />}
      </Modal>
    </Space>
  );
}
