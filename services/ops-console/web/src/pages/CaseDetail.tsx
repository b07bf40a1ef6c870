import {
  App as AntApp,
  Button,
  Card,
  Col,
  Descriptions,
  Empty,
  Form,
  Image,
  Input,
  InputNumber,
  Modal,
  Radio,
  Row,
  Select,
  Space,
  Spin,
  Table,
  Tag,
  Timeline,
  Typography,
} from "antd";
import { useCallback, useEffect, useState } from "react";
import { Link, useParams } from "react-router-dom";
import { api, caseApi } from "../api";
import { RefusalView } from "../components/RefusalView";
import { SlaTags } from "../components/SlaTags";
import {
  ACTION_FIELDS,
  actionBody,
  allowedActions,
  clocksOf,
  type CaseItem,
  type FollowUpRow,
  type StaffAction,
} from "../domain";
import { timelineFacts } from "../refusal";
import { useI18n } from "../i18n";
import { useSession } from "../session";

interface OrderLine {
  line_id: string;
  sku: string;
  name: string;
  size: string | null;
  color: string | null;
  quantity: number;
  unit_price: string;
  paid_amount: string;
  compensated: string;
  remaining_allowance: string;
}

interface Order {
  order_id: string;
  shop_id: string;
  platform: string;
  buyer: { id: string; name: string };
  paid_at: string;
  signed_at: string | null;
  shipping_fee: string;
  shipment: { carrier: string; tracking_no: string } | null;
  lines: OrderLine[];
}

interface Option {
  line_id: string;
  remedy: string;
  reason: string | null;
  eligible: boolean;
  deadline: string | null;
  rule: string;
  message_zh: string;
  message_en: string;
}

interface TimelineEntry {
  id: string;
  action: string;
  actor: string;
  from_status: string | null;
  to_status: string;
  data: Record<string, unknown>;
  at: string;
}

interface Loaded {
  item: CaseItem;
  order: Order | null;
  options: Option[];
  timeline: TimelineEntry[];
  followUp: FollowUpRow | undefined;
}

function ActionForm({ action }: { action: StaffAction }) {
  const { t, label } = useI18n();
  return (
    <>
      {ACTION_FIELDS[action].map((field) => {
        const rules = field.required ? [{ required: true, message: t("required") }] : [];
        const name = t(`field_${field.name}`);
        let input: React.ReactNode;
        if (field.kind === "textarea") input = <Input.TextArea rows={3} />;
        else if (field.kind === "money") input = <InputNumber min={0.01} step={0.01} precision={2} style={{ width: 200 }} />;
        else if (field.kind === "bool")
          input = (
            <Radio.Group>
              <Radio value={true}>{t("yes")}</Radio>
              <Radio value={false}>{t("no")}</Radio>
            </Radio.Group>
          );
        else if (typeof field.kind === "object")
          input = <Select options={field.kind.choices.map((value) => ({ value, label: label("choice", value) }))} />;
        else input = <Input />;
        return (
          <Form.Item key={field.name} name={field.name} label={name} rules={rules}>
            {input}
          </Form.Item>
        );
      })}
    </>
  );
}

function EvidenceThumbs({ item }: { item: CaseItem }) {
  const { t } = useI18n();
  if (!item.evidence.length) return <Empty description={t("no_evidence")} image={Empty.PRESENTED_IMAGE_SIMPLE} />;
  return (
    <Space wrap>
      {item.evidence.map((e) => {
        const src = caseApi(`/v1/evidence/${encodeURIComponent(e.evidence_id)}/content`);
        return (
          <figure key={e.evidence_id} style={{ margin: 0, width: 132 }}>
            {e.kind === "video" ? (
              <video src={src} width={128} height={96} controls preload="metadata" aria-label={e.evidence_id} />
            ) : (
              <Image src={src} width={128} height={96} style={{ objectFit: "cover" }} alt={e.evidence_id} />
            )}
            <figcaption style={{ fontSize: 12 }}>
              {e.evidence_id}
              {e.reused && <Tag color="red">{e.reused_from_order_id ?? "reused"}</Tag>}
            </figcaption>
          </figure>
        );
      })}
    </Space>
  );
}

export function CaseDetailPage() {
  const { caseId = "" } = useParams();
  const { t, label, lang } = useI18n();
  const { user } = useSession();
  const { message } = AntApp.useApp();
  const [loaded, setLoaded] = useState<Loaded | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [running, setRunning] = useState<StaffAction | null>(null);
  const [refusal, setRefusal] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [form] = Form.useForm();
  const when = (at: string | null | undefined) => (at ? new Date(at).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB") : "—");

  const load = useCallback(async () => {
    setError(null);
    try {
      const id = encodeURIComponent(caseId);
      const [item, timeline] = await Promise.all([
        api.get<CaseItem>(caseApi(`/v1/cases/${id}`)),
        api.get<TimelineEntry[]>(caseApi(`/v1/cases/${id}/timeline`)),
      ]);
      const order = encodeURIComponent(item.order_id);
      const [orderBody, options, register] = await Promise.all([
        api.get<Order>(caseApi(`/v1/orders/${order}`)).catch(() => null),
        api
          .get<{ options: Option[] }>(caseApi(`/v1/orders/${order}/after-sales-options`))
          .then((o) => o.options)
          .catch(() => []),
        item.status === "awaiting_carrier"
          ? api
              .get<{ items: FollowUpRow[] }>(caseApi("/v1/registers/logistics-follow-up"), { limit: 1000 })
              .then((r) => r.items.find((row) => row.case_id === item.id))
              .catch(() => undefined)
          : Promise.resolve(undefined),
      ]);
      setLoaded({ item, order: orderBody, options, timeline, followUp: register });
    } catch (refused) {
      setError(refused);
    }
  }, [caseId]);

  useEffect(() => {
    void load();
  }, [load]);

  const run = async () => {
    if (!loaded || !running) return;
    const values = await form.validateFields();
    setBusy(true);
    setRefusal(null);
    try {
      await api.post(
        caseApi(`/v1/cases/${encodeURIComponent(loaded.item.id)}/actions/${running}`),
        actionBody(running, values, loaded.item.version),
      );
      message.success(`${label("action", running)} · ${t("done")}`);
      setRunning(null);
      form.resetFields();
      await load();
    } catch (refused) {
      setRefusal(refused);
    } finally {
      setBusy(false);
    }
  };

  if (error !== null) return <RefusalView error={error} />;
  if (!loaded) return <Spin aria-label={t("loading")} />;
  const { item, order, options, timeline, followUp } = loaded;
  const actions = allowedActions(item.status, user.roles);
  const caseLines = new Map(item.lines.map((l) => [l.line_id, l.quantity]));

  return (
    <Space direction="vertical" style={{ width: "100%" }} size="middle">
      <Space align="baseline" wrap>
        <Link to="/cases">← {t("back")}</Link>
        <Typography.Title level={3} style={{ margin: 0 }}>
          {t("case")} {item.id}
        </Typography.Title>
        <Tag color="blue" data-testid="case-status">
          {label("status", item.status)}
        </Tag>
        <SlaTags clocks={clocksOf(item, followUp, Date.now())} />
      </Space>

      <Card title={t("allowed_actions")} size="small">
        {actions.length ? (
          <Space wrap>
            {actions.map((action) => (
              <Button
                key={action}
                type={action === "approve" ? "primary" : "default"}
                danger={action === "reject" || action === "withdraw"}
                onClick={() => {
                  setRefusal(null);
                  form.resetFields();
                  setRunning(action);
                }}
              >
                {label("action", action)}
              </Button>
            ))}
          </Space>
        ) : (
          <Typography.Text type="secondary">{t("no_actions")}</Typography.Text>
        )}
        {refusal !== null && running === null && <RefusalView error={refusal} />}
      </Card>

      <Row gutter={16}>
        <Col xs={24} xl={14}>
          <Card title={t("case_detail")} size="small">
            <Descriptions
              size="small"
              column={2}
              items={[
                { key: "order", label: t("order"), children: item.order_id },
                { key: "shop", label: t("shop"), children: item.shop_id },
                { key: "remedy", label: t("remedy"), children: label("remedy", item.remedy) },
                { key: "reason", label: t("reason"), children: label("reason", item.reason) },
                { key: "amount", label: t("amount"), children: item.amount ?? "—" },
                { key: "deadline", label: t("deadline"), children: when(item.details?.deadline) },
                { key: "version", label: t("current_version"), children: item.version },
                { key: "created", label: t("created_at"), children: when(item.created_at) },
                {
                  key: "rules",
                  label: t("rules_applied"),
                  span: 2,
                  children: (item.details?.rules ?? []).map((rule) => <Tag key={rule}>{rule}</Tag>),
                },
                { key: "description", label: t("message"), span: 2, children: item.description ?? "—" },
              ]}
            />
          </Card>
          {order && (
            <Card title={`${t("order")} ${order.order_id}`} size="small" style={{ marginTop: 16 }}>
              <Descriptions
                size="small"
                column={3}
                items={[
                  { key: "platform", label: t("platform"), children: order.platform },
                  { key: "buyer", label: t("buyer"), children: order.buyer.name },
                  { key: "fee", label: t("shipping_fee"), children: order.shipping_fee },
                  { key: "paid", label: t("paid_at"), children: when(order.paid_at) },
                  { key: "signed", label: t("signed_at"), children: when(order.signed_at) },
                  {
                    key: "tracking",
                    label: t("tracking_no"),
                    children: order.shipment ? `${order.shipment.carrier} ${order.shipment.tracking_no}` : "—",
                  },
                ]}
              />
              <Table<OrderLine>
                rowKey="line_id"
                size="small"
                pagination={false}
                dataSource={order.lines}
                aria-label={t("lines")}
                rowClassName={(line) => (caseLines.has(line.line_id) ? "ant-table-row-selected" : "")}
                columns={[
                  { title: "ID", dataIndex: "line_id" },
                  { title: t("sku"), render: (_, l) => `${l.name} ${l.sku} ${l.size ?? ""} ${l.color ?? ""}` },
                  { title: t("quantity"), render: (_, l) => (caseLines.has(l.line_id) ? `${caseLines.get(l.line_id)} / ${l.quantity}` : l.quantity) },
                  { title: t("paid"), dataIndex: "paid_amount", align: "right" },
                  { title: t("compensated"), dataIndex: "compensated", align: "right" },
                  { title: t("grantable"), dataIndex: "remaining_allowance", align: "right" },
                ]}
              />
            </Card>
          )}
          <Card title={t("options")} size="small" style={{ marginTop: 16 }}>
            <Table<Option>
              rowKey={(o) => `${o.line_id}-${o.remedy}-${o.reason ?? ""}`}
              size="small"
              pagination={false}
              dataSource={options}
              aria-label={t("options")}
              columns={[
                { title: "ID", dataIndex: "line_id" },
                { title: t("remedy"), render: (_, o) => label("remedy", o.remedy) },
                { title: t("reason"), render: (_, o) => label("reason", o.reason) },
                {
                  title: t("eligible"),
                  render: (_, o) => <Tag color={o.eligible ? "green" : "red"}>{o.eligible ? t("eligible") : t("not_eligible")}</Tag>,
                },
                { title: t("deadline"), render: (_, o) => when(o.deadline) },
                { title: t("rule"), render: (_, o) => <Typography.Text code>{o.rule}</Typography.Text> },
                { title: t("message"), render: (_, o) => (lang === "zh" ? o.message_zh : o.message_en) },
              ]}
            />
          </Card>
        </Col>
        <Col xs={24} xl={10}>
          <Card title={t("evidence")} size="small">
            <EvidenceThumbs item={item} />
          </Card>
          <Card title={t("timeline")} size="small" style={{ marginTop: 16 }}>
            <Timeline
              data-testid="timeline"
              items={timeline.map((entry) => ({
                key: entry.id,
                children: (
                  <div>
                    <Typography.Text strong>{label("action", entry.action)}</Typography.Text>{" "}
                    <Typography.Text data-testid="timeline-actor">{entry.actor}</Typography.Text>
                    <div style={{ fontSize: 12 }}>
                      {when(entry.at)} · {entry.from_status ? `${label("status", entry.from_status)} → ` : ""}
                      {label("status", entry.to_status)}
                    </div>
                    {timelineFacts(entry.data).length > 0 && (
                      <Typography.Text type="secondary" style={{ fontSize: 12, wordBreak: "break-all" }}>
                        {timelineFacts(entry.data).join(" · ")}
                      </Typography.Text>
                    )}
                  </div>
                ),
              }))}
            />
          </Card>
        </Col>
      </Row>

      <Modal
        open={running !== null}
        title={running ? t("confirm_action", { action: label("action", running) }) : ""}
        okText={t("run")}
        cancelText={t("cancel")}
        confirmLoading={busy}
        onOk={() => void run()}
        onCancel={() => setRunning(null)}
        destroyOnHidden
      >
        <Form form={form} layout="vertical" preserve={false}>
          {running && <ActionForm action={running} />}
        </Form>
        {refusal !== null && <RefusalView error={refusal} />}
      </Modal>
    </Space>
  );
}
