-- One database per service on the shared server.
CREATE DATABASE case_api;
CREATE DATABASE logistics_watcher;
CREATE DATABASE payout_worker;
