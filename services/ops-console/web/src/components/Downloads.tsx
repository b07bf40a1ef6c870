import { App as AntApp, Button, Space } from "antd";
import { useState } from "react";
import { api, withQuery, type Query } from "../api";
import { useI18n } from "../i18n";
import { refusalLine, refusalOf } from "../refusal";

/** Download buttons for a register: xlsx (Chinese headers, Beijing time, ids as text) and CSV. */
export function Downloads({ path, name, query = {} }: { path: string; name: string; query?: Query }) {
  const { t, lang } = useI18n();
  const { message } = AntApp.useApp();
  const [busy, setBusy] = useState<string | null>(null);
  const get = async (format: "xlsx" | "csv") => {
    setBusy(format);
    try {
      const saved = await api.download(withQuery(path, { ...query, format }), `${name}.${format}`);
      message.success(t("downloaded", { name: saved }));
    } catch (refused) {
      message.error(refusalLine(refusalOf(refused, lang)), 8);
    } finally {
      setBusy(null);
    }
  };
  return (
    <Space>
      <Button onClick={() => void get("xlsx")} loading={busy === "xlsx"} aria-label={`${t("download_xlsx")} ${name}`}>
        {t("download_xlsx")}
      </Button>
      <Button onClick={() => void get("csv")} loading={busy === "csv"} aria-label={`${t("download_csv")} ${name}`}>
        {t("download_csv")}
      </Button>
    </Space>
  );
}
