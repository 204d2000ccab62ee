/* rtspcam.c - a test RTSP camera: libgstrtspserver serving videotestsrc (a moving pattern) as
 * H.264 on 127.0.0.1, optionally behind Basic auth. Integration tests start it, read its one
 * "ready" line for the URL, and kill it (SIGTERM, SIGKILL) and restart it on the same port to play
 * camera loss and recovery; SIGSTOP / SIGCONT play a camera that stalls with its socket open.
 * Each client's connect and close goes to stderr with the open count, so a test can check that
 * many watchers of one camera cost the camera one client.
 *
 *   rtspcam [--port N] [--path /cam] [--size WxH] [--fps N] [--gop N] [--user U --pass P]
 *           [--pattern NAME] [--tcp-only]
 *
 * stdout holds exactly one line, "rtspcam: ready rtsp://127.0.0.1:PORT/PATH" (never the
 * credentials), once the server listens; everything else goes to stderr. Exit status: 0 after
 * SIGTERM/SIGINT, 2 for bad options, 1 when the server cannot start. A test tool with its own GLib
 * main loop, not part of the server. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib-unix.h>
#include <gst/gst.h>
#include <gst/rtsp-server/rtsp-server.h>

#define ROLE "camera-user"

typedef struct {
    GMainLoop *loop;
    int open_clients;
} cam_t;

/* Options (GOption fills them). */
static gint opt_port = 0;
static gchar *opt_path = NULL;
static gchar *opt_size = NULL;
static gint opt_fps = 30;
static gint opt_gop = 0;
static gchar *opt_user = NULL;
static gchar *opt_pass = NULL;
static gchar *opt_pattern = NULL;
static gboolean opt_tcp_only = FALSE;

static GOptionEntry entries[] = {
    {"port", 0, 0, G_OPTION_ARG_INT, &opt_port,
     "TCP port on 127.0.0.1 (0, the default: a free one, printed in the ready line)", "N"},
    {"path", 0, 0, G_OPTION_ARG_STRING, &opt_path, "mount path (default /cam)", "/PATH"},
    {"size", 0, 0, G_OPTION_ARG_STRING, &opt_size, "frame size (default 640x480)", "WxH"},
    {"fps", 0, 0, G_OPTION_ARG_INT, &opt_fps, "frames per second, 1..120 (default 30)", "N"},
    {"gop", 0, 0, G_OPTION_ARG_INT, &opt_gop,
     "frames from one keyframe to the next (default: fps, one keyframe a second)", "N"},
    {"user", 0, 0, G_OPTION_ARG_STRING, &opt_user,
     "require Basic auth with this user (needs --pass); clients without it get 401", "U"},
    {"pass", 0, 0, G_OPTION_ARG_STRING, &opt_pass, "the password for --user", "P"},
    {"pattern", 0, 0, G_OPTION_ARG_STRING, &opt_pattern,
     "videotestsrc pattern nick (default ball, which moves: frames differ)", "NAME"},
    {"tcp-only", 0, 0, G_OPTION_ARG_NONE, &opt_tcp_only,
     "offer RTP over the RTSP connection only (no UDP)", NULL},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
};

static gboolean on_signal(gpointer data)
{
    cam_t *cam = data;
    g_main_loop_quit(cam->loop);
    return G_SOURCE_CONTINUE;
}

static void on_client_closed(GstRTSPClient *client, gpointer data)
{
    cam_t *cam = data;
    cam->open_clients--;
    fprintf(stderr, "rtspcam: client closed, %d open\n", cam->open_clients);
}

static void on_client_connected(GstRTSPServer *server, GstRTSPClient *client, gpointer data)
{
    cam_t *cam = data;
    cam->open_clients++;
    fprintf(stderr, "rtspcam: client connected, %d open\n", cam->open_clients);
    g_signal_connect(client, "closed", G_CALLBACK(on_client_closed), cam);
}

/* Pattern nicks go into a launch line: letters, digits and '-' only, so nothing else can. */
static int pattern_ok(const char *s)
{
    if (!s || !*s || strlen(s) > 32)
        return 0;
    for (const char *p = s; *p; p++)
        if (!g_ascii_isalnum(*p) && *p != '-')
            return 0;
    return 1;
}

/* A mount path: '/' then [A-Za-z0-9._-/]; nothing rtsp URLs would need to escape. */
static int path_ok(const char *s)
{
    if (!s || s[0] != '/' || strlen(s) > 200)
        return 0;
    for (const char *p = s + 1; *p; p++)
        if (!g_ascii_isalnum(*p) && !strchr("._-/", *p))
            return 0;
    return 1;
}

static int usage(const char *msg)
{
    fprintf(stderr, "rtspcam: %s (rtspcam --help lists the options)\n", msg);
    return 2;
}

int main(int argc, char **argv)
{
    int rc = 1;
    cam_t cam = {0};
    GOptionContext *ctx = NULL;
    GstRTSPServer *server = NULL;
    GstRTSPMediaFactory *factory = NULL;
    GError *err = NULL;
    gchar *launch = NULL;
    unsigned width = 640, height = 480;

    /* the ready line must reach a test that reads a pipe, and nothing may sit behind it */
    setvbuf(stdout, NULL, _IOLBF, 0);
    ctx = g_option_context_new("- a test RTSP camera (H.264 from videotestsrc) on 127.0.0.1");
    g_option_context_set_summary(
        ctx, "Serves rtsp://127.0.0.1:PORT/PATH; prints \"rtspcam: ready <url>\" on stdout once it\n"
             "listens (no credentials in it), logs clients to stderr, exits 0 on SIGTERM/SIGINT.\n"
             "All clients share one encoder (one shared media).");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_option_context_add_group(ctx, gst_init_get_option_group());
    if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
        rc = usage(err->message);
        goto out;
    }
    if (argc > 1) {
        rc = usage("unexpected argument");
        goto out;
    }
    if (opt_port < 0 || opt_port > 65535) {
        rc = usage("--port must be 0..65535");
        goto out;
    }
    if (!opt_path)
        opt_path = g_strdup("/cam");
    if (!path_ok(opt_path)) {
        rc = usage("--path must be '/' followed by letters, digits, '.', '_', '-', '/'");
        goto out;
    }
    if (opt_size) {
        char tail;
        if (sscanf(opt_size, "%ux%u%c", &width, &height, &tail) != 2 || width < 16 ||
            height < 16 || width > 4096 || height > 4096 || width % 2 || height % 2) {
            rc = usage("--size must be WxH, even numbers 16..4096");
            goto out;
        }
    }
    if (opt_fps < 1 || opt_fps > 120) {
        rc = usage("--fps must be 1..120");
        goto out;
    }
    if (opt_gop == 0)
        opt_gop = opt_fps;
    if (opt_gop < 1 || opt_gop > 10000) {
        rc = usage("--gop must be 1..10000");
        goto out;
    }
    if (!!opt_user != !!opt_pass || (opt_user && (!*opt_user || strchr(opt_user, ':')))) {
        rc = usage("--user and --pass go together (and the user holds no ':')");
        goto out;
    }
    if (opt_pattern && !pattern_ok(opt_pattern)) {
        rc = usage("--pattern must be a videotestsrc pattern nick");
        goto out;
    }

    /* I420 so x264enc does not pick a 4:4:4 profile few decoders take; config-interval=-1 puts
     * SPS/PPS before every keyframe so a client joining the shared stream decodes from its first
     * keyframe; no B-frames, zerolatency: what IP cameras send. */
    launch = g_strdup_printf(
        "( videotestsrc is-live=true pattern=%s ! video/x-raw,format=I420,width=%u,height=%u,"
        "framerate=%d/1 ! x264enc tune=zerolatency speed-preset=ultrafast bframes=0 "
        "key-int-max=%d ! video/x-h264,stream-format=byte-stream ! rtph264pay name=pay0 pt=96 "
        "config-interval=-1 )",
        opt_pattern ? opt_pattern : "ball", width, height, opt_fps, opt_gop);
    /* Build it once now: a missing plugin or a bad pattern fails here, before "ready". */
    GstElement *probe = gst_parse_launch(launch, &err);
    if (!probe || err) {
        fprintf(stderr, "rtspcam: cannot build the pipeline: %s\n", err ? err->message : "?");
        if (probe)
            gst_object_unref(probe);
        goto out;
    }
    gst_object_unref(probe);

    cam.loop = g_main_loop_new(NULL, FALSE);
    server = gst_rtsp_server_new();
    gst_rtsp_server_set_address(server, "127.0.0.1");
    gchar *service = g_strdup_printf("%d", opt_port);
    gst_rtsp_server_set_service(server, service);
    g_free(service);
    g_signal_connect(server, "client-connected", G_CALLBACK(on_client_connected), &cam);

    factory = gst_rtsp_media_factory_new();
    gst_rtsp_media_factory_set_launch(factory, launch);
    gst_rtsp_media_factory_set_shared(factory, TRUE);
    if (opt_tcp_only)
        gst_rtsp_media_factory_set_protocols(factory, GST_RTSP_LOWER_TRANS_TCP);

    if (opt_user) {
        /* With an auth object and no default token, a request without valid credentials is
         * answered 401; the token's role is what the factory lets in. */
        GstRTSPAuth *auth = gst_rtsp_auth_new();
        GstRTSPToken *token =
            gst_rtsp_token_new(GST_RTSP_TOKEN_MEDIA_FACTORY_ROLE, G_TYPE_STRING, ROLE, NULL);
        gchar *basic = gst_rtsp_auth_make_basic(opt_user, opt_pass);
        gst_rtsp_auth_add_basic(auth, basic, token);
        g_free(basic);
        gst_rtsp_token_unref(token);
        gst_rtsp_server_set_auth(server, auth);
        g_object_unref(auth);
        gst_rtsp_media_factory_add_role(factory, ROLE, GST_RTSP_PERM_MEDIA_FACTORY_ACCESS,
                                        G_TYPE_BOOLEAN, TRUE, GST_RTSP_PERM_MEDIA_FACTORY_CONSTRUCT,
                                        G_TYPE_BOOLEAN, TRUE, NULL);
    }

    GstRTSPMountPoints *mounts = gst_rtsp_server_get_mount_points(server);
    gst_rtsp_mount_points_add_factory(mounts, opt_path, factory);
    factory = NULL; /* the mount points own it now */
    g_object_unref(mounts);

    /* The server's listening socket is bound with SO_REUSEADDR (GLib's allow_reuse), so a camera
     * restarted on the port of one just killed binds even with connections in TIME_WAIT. */
    if (gst_rtsp_server_attach(server, NULL) == 0) {
        fprintf(stderr, "rtspcam: cannot listen on 127.0.0.1:%d\n", opt_port);
        goto out;
    }
    g_unix_signal_add(SIGTERM, on_signal, &cam);
    g_unix_signal_add(SIGINT, on_signal, &cam);

    printf("rtspcam: ready rtsp://127.0.0.1:%d%s\n", gst_rtsp_server_get_bound_port(server),
           opt_path);
    fflush(stdout);
    g_main_loop_run(cam.loop);
    fprintf(stderr, "rtspcam: stopping\n");
    rc = 0;

out:
    if (factory)
        g_object_unref(factory);
    if (server)
        g_object_unref(server);
    if (cam.loop)
        g_main_loop_unref(cam.loop);
    if (err)
        g_error_free(err);
    g_free(launch);
    if (ctx)
        g_option_context_free(ctx);
    return rc;
}
