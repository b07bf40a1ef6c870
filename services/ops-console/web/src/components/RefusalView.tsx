import { Alert, Descriptions, Typography } from "antd";
import { useI18n } from "../i18n";
import { refusalOf } from "../refusal";

/** A refusal as the service said it: both messages, the rule, the facts, the fields. */
export function RefusalView({ error }: { error: unknown }) {
  const { t, lang } = useI18n();
  const refusal = refusalOf(error, lang);
  const items = [
    refusal.rule && { key: "rule", label: t("rule"), children: <Typography.Text code>{refusal.rule}</Typography.Text> },
    refusal.code && { key: "code", label: t("code"), children: refusal.code },
    refusal.detail && { key: "detail", label: t("message"), children: refusal.detail },
    ...refusal.facts.map(([name, value]) => ({ key: `fact-${name}`, label: name, children: value })),
    ...refusal.fields.map((f, i) => ({ key: `field-${i}`, label: `${t("fields")}: ${f.field}`, children: f.message })),
    refusal.requestId && { key: "request", label: t("request_id"), children: refusal.requestId },
  ].filter(Boolean) as { key: string; label: string; children: React.ReactNode }[];
  return (
    <Alert
      type="error"
      role="alert"
      data-testid="refusal"
      showIcon
      message={`${t("refused")} · ${refusal.status || ""} ${refusal.title}`}
      description={
        <>
          {refusal.messages.map((m) => (
            <Typography.Paragraph key={m.lang} lang={m.lang === "zh" ? "zh-CN" : "en"} style={{ marginBottom: 4 }}>
              {m.text}
            </Typography.Paragraph>
          ))}
          {items.length > 0 && <Descriptions size="small" column={1} items={items} />}
        </>
      }
    />
  );
}
