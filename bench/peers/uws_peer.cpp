/* SPDX-License-Identifier: MIT */
/*
 * uws_peer: the uWebSockets servers of bench/run's echo-wss, echo-deflate and publish-uws
 * scenarios, written against uWebSockets' public API (App, SSLApp, WebSocketBehavior,
 * publish). bench/run compiles it against the checkout in UWS_DIR; no uWebSockets code is in
 * this repository.
 *
 *   uws_peer PORT echo-tls CERT KEY   SSLApp echo, compression off (build with WITH_OPENSSL)
 *   uws_peer PORT echo-shared         App echo, SHARED_COMPRESSOR | SHARED_DECOMPRESSOR
 *   uws_peer PORT echo-dedicated      App echo, DEDICATED_COMPRESSOR | DEDICATED_DECOMPRESSOR
 *   uws_peer PORT pubsub              App: /sub?topic=T subscribes to T, a message on
 *                                     /pub?topic=T is published to T with App::publish
 *
 * Every echo uses the received opcode and asks for compression (which applies only when
 * permessage-deflate was negotiated). No automatic pings and no idle timeout: eddy's
 * examples have neither by default.
 */
#include "App.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

struct PerSocketData {
    bool publisher = false;
    std::string topic;
};

template <bool SSL> using Behavior = typename uWS::TemplatedApp<SSL>::template WebSocketBehavior<PerSocketData>;

template <bool SSL> Behavior<SSL> echo_behavior(uWS::CompressOptions compression)
{
    Behavior<SSL> b = {};
    b.compression = compression;
    b.maxPayloadLength = 2 * 1024 * 1024;
    b.idleTimeout = 0;
    b.maxBackpressure = 64 * 1024 * 1024;
    b.sendPingsAutomatically = false;
    b.message = [](auto *ws, std::string_view message, uWS::OpCode op) { ws->send(message, op, true); };
    return b;
}

template <bool SSL> int run_echo(uWS::TemplatedApp<SSL> &&app, int port, uWS::CompressOptions compression)
{
    bool ok = false;
    app.template ws<PerSocketData>("/*", echo_behavior<SSL>(compression))
        .listen("127.0.0.1", port, [&ok](auto *socket) { ok = socket != nullptr; });
    if (!ok) {
        std::fprintf(stderr, "uws_peer: cannot listen on 127.0.0.1:%d\n", port);
        return 1;
    }
    app.run();
    return 0;
}

int run_pubsub(int port)
{
    uWS::App app;
    Behavior<false> b = {};
    b.compression = uWS::DISABLED;
    b.maxPayloadLength = 2 * 1024 * 1024;
    b.idleTimeout = 0;
    b.maxBackpressure = 64 * 1024 * 1024;
    b.sendPingsAutomatically = false;
    b.upgrade = [](auto *res, auto *req, auto *context) {
        PerSocketData data;
        data.publisher = req->getUrl() == "/pub";
        data.topic = std::string(req->getQuery("topic"));
        res->template upgrade<PerSocketData>(std::move(data), req->getHeader("sec-websocket-key"),
                                             req->getHeader("sec-websocket-protocol"),
                                             req->getHeader("sec-websocket-extensions"), context);
    };
    b.open = [](auto *ws) {
        PerSocketData *data = ws->getUserData();
        if (!data->publisher && !data->topic.empty())
            ws->subscribe(data->topic);
    };
    b.message = [&app](auto *ws, std::string_view message, uWS::OpCode op) {
        PerSocketData *data = ws->getUserData();
        if (data->publisher)
            app.publish(data->topic, message, op, false);
        else
            ws->send(message, op, false);
    };
    bool ok = false;
    app.ws<PerSocketData>("/*", std::move(b)).listen("127.0.0.1", port, [&ok](auto *socket) {
        ok = socket != nullptr;
    });
    if (!ok) {
        std::fprintf(stderr, "uws_peer: cannot listen on 127.0.0.1:%d\n", port);
        return 1;
    }
    app.run();
    return 0;
}

} // namespace

int main(int argc, char **argv)
{
    if (argc < 3) {
        std::fprintf(stderr, "usage: uws_peer PORT echo-tls CERT KEY | echo-shared | "
                             "echo-dedicated | pubsub\n");
        return 2;
    }
    int port = std::atoi(argv[1]);
    std::string mode = argv[2];
    if (mode == "echo-tls" && argc == 5) {
        uWS::SocketContextOptions options = {};
        options.cert_file_name = argv[3];
        options.key_file_name = argv[4];
        uWS::SSLApp app(options);
        if (app.constructorFailed()) {
            std::fprintf(stderr, "uws_peer: cannot load %s / %s\n", argv[3], argv[4]);
            return 1;
        }
        return run_echo<true>(std::move(app), port, uWS::DISABLED);
    }
    if (mode == "echo-shared")
        return run_echo<false>(uWS::App(), port, uWS::CompressOptions(uWS::SHARED_COMPRESSOR | uWS::SHARED_DECOMPRESSOR));
    if (mode == "echo-dedicated")
        return run_echo<false>(uWS::App(), port,
                               uWS::CompressOptions(uWS::DEDICATED_COMPRESSOR | uWS::DEDICATED_DECOMPRESSOR));
    if (mode == "pubsub")
        return run_pubsub(port);
    std::fprintf(stderr, "uws_peer: unknown mode %s\n", argv[2]);
    return 2;
}
