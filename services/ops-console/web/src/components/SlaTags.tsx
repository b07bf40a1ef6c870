import { Space, Tag } from "antd";
import { formatDuration, type SlaClock } from "../domain";
import { useI18n } from "../i18n";

const COLORS = { overdue: "red", due_soon: "orange", ok: "green", waiting: "blue" } as const;

export function SlaTags({ clocks }: { clocks: SlaClock[] }) {
  const { t, lang } = useI18n();
  if (!clocks.length) return <span aria-label={t("none")}>—</span>;
  return (
    <Space size={[0, 4]} wrap>
      {clocks.map((clock) => {
        const span = formatDuration(clock.ms, lang);
        const when =
          clock.state === "waiting"
            ? `${t("waiting")} ${span}${clock.missing ? ` · ${t("missing_items", { n: clock.missing })}` : ""}`
            : clock.state === "overdue"
              ? `${t("overdue")} ${span}`
              : `${t("due_in")} ${span}`;
        const title = clock.dueAt ? new Date(clock.dueAt).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB") : undefined;
        return (
          <Tag key={clock.kind} color={COLORS[clock.state]} title={title} data-clock={clock.kind}>
            {t(`clock_${clock.kind}`)}: {when}
          </Tag>
        );
      })}
    </Space>
  );
}
