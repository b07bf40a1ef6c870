import { Alert, Button, Card, Form, Input, Space, Typography } from "antd";
import { useState } from "react";
import { api, type User } from "../api";
import { RefusalView } from "../components/RefusalView";
import { useI18n } from "../i18n";

export function LoginPage({ onSignedIn, expired = false }: { onSignedIn: (user: User) => void; expired?: boolean }) {
  const { t, lang, setLang } = useI18n();
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (values: { username: string; password: string }) => {
    setBusy(true);
    setError(null);
    try {
      onSignedIn((await api.signIn(values.username, values.password)).user);
    } catch (refused) {
      setError(refused);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main style={{ display: "flex", justifyContent: "center", paddingTop: 96 }}>
      <Card style={{ width: 380 }}>
        <Space direction="vertical" style={{ width: "100%" }}>
          <Typography.Title level={3} style={{ marginTop: 0 }}>
            {t("app_title")}
          </Typography.Title>
          {expired && error === null && <Alert type="warning" role="status" showIcon message={t("session_expired")} />}
          <Form layout="vertical" onFinish={submit} requiredMark={false}>
            <Form.Item label={t("username")} name="username" rules={[{ required: true, message: t("required") }]}>
              <Input autoComplete="username" autoFocus />
            </Form.Item>
            <Form.Item label={t("password")} name="password" rules={[{ required: true, message: t("required") }]}>
              <Input.Password autoComplete="current-password" />
            </Form.Item>
            {error !== null && (
              <Form.Item>
                <RefusalView error={error} />
              </Form.Item>
            )}
            <Button type="primary" htmlType="submit" loading={busy} block>
              {t("sign_in")}
            </Button>
          </Form>
          <Button type="link" onClick={() => setLang(lang === "zh" ? "en" : "zh")} aria-label={t("language")}>
            {t("switch_language")}
          </Button>
        </Space>
      </Card>
    </main>
  );
}
