import { Card, Col, Form, Input, Row, Select, Space, Table, Tag, Typography } from "antd";
import { useEffect, useMemo, useState } from "react";
import { api, caseApi, watcherApi, type Page } from "../api";
import { Chart } from "../components/Chart";
import { Downloads } from "../components/Downloads";
import { RefusalView } from "../components/RefusalView";
import type { FollowUpRow } from "../domain";
import { useI18n, valuesOf } from "../i18n";
import { openByKindAndCarrier, trends, type Alert } from "../trends";

const PAGES = 5; // up to 1,000 recent alerts for the trends

export function LogisticsPage() {
  const { t, label, lang } = useI18n();
  const [alerts, setAlerts] = useState<Alert[]>([]);
  const [followUps, setFollowUps] = useState<FollowUpRow[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [kind, setKind] = useState<string | undefined>();
  const [carrier, setCarrier] = useState<string>("");
  const when = (at: string | null) => (at ? new Date(at).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB") : "—");

  useEffect(() => {
    (async () => {
      try {
        const all: Alert[] = [];
        let cursor: string | null = null;
        for (let i = 0; i < PAGES; i++) {
          const page: Page<Alert> = await api.get<Page<Alert>>(watcherApi("/v1/alerts"), { limit: 200, cursor });
          all.push(...page.items);
          cursor = page.next_cursor;
          if (!cursor) break;
        }
        setAlerts(all);
        setFollowUps(
          (await api.get<{ items: FollowUpRow[] }>(caseApi("/v1/registers/logistics-follow-up"), { limit: 500 })).items,
        );
      } catch (refused) {
        setError(refused);
      }
    })();
  }, []);

  const open = useMemo(
    () => alerts.filter((a) => a.status === "open" && (!kind || a.kind === kind) && (!carrier || a.carrier.includes(carrier))),
    [alerts, kind, carrier],
  );
  const summary = useMemo(() => openByKindAndCarrier(alerts), [alerts]);
  const charts = useMemo(() => trends(alerts, Date.now()), [alerts]);
  const kinds = valuesOf("kind");

  return (
    <Space direction="vertical" style={{ width: "100%" }} size="middle">
      <Typography.Title level={3} style={{ margin: 0 }}>
        {t("logistics")}
      </Typography.Title>
      {error !== null && <RefusalView error={error} />}
      <Row gutter={16}>
        {charts.map((trend) => (
          <Col xs={24} lg={8} key={trend.kind}>
            <Card size="small" title={`${label("kind", trend.kind)} · ${t("trends")}`}>
              <Chart
                height={220}
                label={`${label("kind", trend.kind)} · ${t("trends")}`}
                option={{
                  tooltip: { trigger: "axis" },
                  legend: { type: "scroll", top: 0 },
                  grid: { left: 32, right: 8, top: 32, bottom: 24 },
                  xAxis: { type: "category", data: trend.days.map((d) => d.slice(5)) },
                  yAxis: { type: "value", minInterval: 1 },
                  series: trend.series.map((s) => ({ name: s.carrier, type: "line", data: s.counts })),
                }}
              />
            </Card>
          </Col>
        ))}
      </Row>
      <Card size="small" title={t("alerts_open")}>
        <Table
          size="small"
          rowKey="carrier"
          pagination={false}
          dataSource={summary}
          aria-label={t("alerts_open")}
          columns={[
            { title: t("carrier"), dataIndex: "carrier" },
            ...kinds.map((k) => ({ title: label("kind", k), key: k, align: "right" as const, render: (_: unknown, r: (typeof summary)[number]) => r.counts[k] ?? 0 })),
            { title: t("total"), dataIndex: "total", align: "right" as const },
          ]}
        />
        <Form layout="inline" style={{ margin: "12px 0" }}>
          <Form.Item label={t("kind")}>
            <Select
              allowClear
              style={{ width: 180 }}
              value={kind}
              onChange={setKind}
              placeholder={t("all")}
              options={kinds.map((k) => ({ value: k, label: label("kind", k) }))}
            />
          </Form.Item>
          <Form.Item label={t("carrier")}>
            <Input allowClear value={carrier} onChange={(e) => setCarrier(e.target.value)} style={{ width: 140 }} />
          </Form.Item>
        </Form>
        <Table<Alert>
          size="small"
          rowKey="id"
          dataSource={open}
          pagination={{ pageSize: 10, showSizeChanger: false }}
          columns={[
            { title: t("kind"), render: (_, a) => <Tag color="orange">{label("kind", a.kind)}</Tag> },
            { title: t("carrier"), dataIndex: "carrier" },
            { title: t("tracking_no"), dataIndex: "tracking_no" },
            { title: t("order"), dataIndex: "order_id" },
            { title: t("shop"), dataIndex: "shop_id" },
            { title: t("last_event_at"), render: (_, a) => when(a.last_event_at) },
            { title: t("opened_at"), render: (_, a) => when(a.opened_at) },
          ]}
        />
      </Card>
      <Card size="small" title={t("follow_up")} extra={<Downloads path={caseApi("/v1/registers/logistics-follow-up")} name="logistics-follow-up" />}>
        <Table<FollowUpRow>
          size="small"
          rowKey="id"
          dataSource={followUps}
          locale={{ emptyText: t("no_follow_up") }}
          pagination={{ pageSize: 10, showSizeChanger: false }}
          scroll={{ x: 1000 }}
          columns={[
            { title: t("case"), dataIndex: "case_id" },
            { title: t("order"), dataIndex: "order_id" },
            { title: t("carrier"), dataIndex: "carrier" },
            { title: t("tracking_no"), dataIndex: "tracking_no" },
            { title: t("problem"), dataIndex: "problem" },
            { title: t("reported_at"), render: (_, r) => when(r.reported_at) },
            {
              title: t("sla_due_at"),
              render: (_, r) =>
                r.sla_due_at ? (
                  <Tag color={!r.verdict && Date.parse(r.sla_due_at) < Date.now() ? "red" : "default"}>{when(r.sla_due_at)}</Tag>
                ) : (
                  "—"
                ),
            },
            { title: t("verdict"), dataIndex: "verdict" },
            { title: t("outcome"), dataIndex: "outcome" },
            {
              title: t("carrier_claim"),
              render: (_, r) => (r.carrier_claim ? `${r.carrier_claim.status} ${r.carrier_claim.amount ?? ""}` : "—"),
            },
          ]}
        />
      </Card>
    </Space>
  );
}
