-- One database per service on the shared server (ops-console too).
CREATE DATABASE case_api;
CREATE DATABASE logistics_watcher;
CREATE DATABASE payout_worker;
CREATE DATABASE ops_console;
