import { App as AntApp, Button, ConfigProvider, Layout, Menu, Space, Spin, Typography } from "antd";
import enUS from "antd/locale/en_US";
import zhCN from "antd/locale/zh_CN";
import dayjs from "dayjs";
import "dayjs/locale/zh-cn";
import { useCallback, useEffect, useMemo, useState } from "react";
import { HashRouter, Navigate, Route, Routes, useLocation, useNavigate } from "react-router-dom";
import { api, type User } from "./api";
import { I18nContext, makeI18n, useI18n, type Lang } from "./i18n";
import { AccountsPage } from "./pages/Accounts";
import { CaseDetailPage } from "./pages/CaseDetail";
import { CashbackPage } from "./pages/Cashback";
import { LoginPage } from "./pages/Login";
import { LogisticsPage } from "./pages/Logistics";
import { QueuePage } from "./pages/Queue";
import { SessionContext, sessionOf, type SessionState } from "./session";

const LANG_KEY = "ops-console.lang";

function Shell({ session, onSignOut }: { session: SessionState; onSignOut: () => void }) {
  const { t, lang, setLang } = useI18n();
  const navigate = useNavigate();
  const location = useLocation();
  const section = "/" + (location.pathname.split("/")[1] || "cases");
  const items = [
    { key: "/cases", label: t("queue") },
    { key: "/logistics", label: t("logistics") },
    { key: "/cashback", label: t("cashback") },
    ...(session.has("admin") ? [{ key: "/accounts", label: t("accounts") }] : []),
  ];
  return (
    <Layout style={{ minHeight: "100vh" }}>
      <Layout.Header style={{ display: "flex", alignItems: "center", gap: 16, paddingInline: 16 }}>
        <Typography.Title level={4} style={{ color: "#fff", margin: 0, whiteSpace: "nowrap" }}>
          {t("app_title")}
        </Typography.Title>
        <nav aria-label={t("app_title")} style={{ flex: 1, minWidth: 0 }}>
          <Menu
            theme="dark"
            mode="horizontal"
            selectedKeys={[section]}
            items={items}
            onClick={({ key }) => navigate(key)}
          />
        </nav>
        <Space>
          <Typography.Text style={{ color: "#fff" }} data-testid="user-name">
            {session.user.display_name}
          </Typography.Text>
          <Button size="small" onClick={() => setLang(lang === "zh" ? "en" : "zh")} aria-label={t("language")}>
            {t("switch_language")}
          </Button>
          <Button size="small" onClick={onSignOut}>
            {t("sign_out")}
          </Button>
        </Space>
      </Layout.Header>
      <Layout.Content style={{ padding: 16 }}>
        <main>
          <Routes>
            <Route path="/cases" element={<QueuePage />} />
            <Route path="/cases/:caseId" element={<CaseDetailPage />} />
            <Route path="/logistics" element={<LogisticsPage />} />
            <Route path="/cashback" element={<CashbackPage />} />
            {session.has("admin") && <Route path="/accounts" element={<AccountsPage />} />}
            <Route path="*" element={<Navigate to="/cases" replace />} />
          </Routes>
        </main>
      </Layout.Content>
    </Layout>
  );
}

export function App() {
  const [lang, setLangState] = useState<Lang>(() => (localStorage.getItem(LANG_KEY) === "en" ? "en" : "zh"));
  const [user, setUser] = useState<User | null>(null);
  const [checking, setChecking] = useState(true);
  const [expired, setExpired] = useState(false);
  const setLang = useCallback((next: Lang) => {
    localStorage.setItem(LANG_KEY, next);
    setLangState(next);
  }, []);
  const i18n = useMemo(() => makeI18n(lang, setLang), [lang, setLang]);

  useEffect(() => {
    dayjs.locale(lang === "zh" ? "zh-cn" : "en");
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  }, [lang]);

  useEffect(() => {
    api.onUnauthorized = () => {
      setUser(null);
      setExpired(true);
    };
    api
      .current()
      .then((session) => setUser(session?.user ?? null))
      .catch(() => setUser(null))
      .finally(() => setChecking(false));
  }, []);

  const signOut = async () => {
    await api.signOut().catch(() => undefined);
    setUser(null);
  };

  return (
    <ConfigProvider locale={lang === "zh" ? zhCN : enUS} button={{ autoInsertSpace: false }}>
      <AntApp>
        <I18nContext.Provider value={i18n}>
          {checking ? (
            <Spin style={{ display: "block", marginTop: 120 }} aria-label={i18n.t("loading")} />
          ) : user ? (
            <SessionContext.Provider value={sessionOf(user)}>
              <HashRouter>
                <Shell session={sessionOf(user)} onSignOut={signOut} />
              </HashRouter>
            </SessionContext.Provider>
          ) : (
            <LoginPage
              expired={expired}
              onSignedIn={(signedIn) => {
                setExpired(false);
                setUser(signedIn);
              }}
            />
          )}
        </I18nContext.Provider>
      </AntApp>
    </ConfigProvider>
  );
}
