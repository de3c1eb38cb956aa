using System.Net;
using System.Net.Sockets;
using Shoal.Protocol;

namespace Shoal.Cluster;

/// <summary>
/// The leader's listening socket. Every connection must pass the <see cref="Handshake"/> within a few seconds;
/// one that fails (wrong secret, garbage, a replayed proof, an oversized frame, silence) is logged and closed
/// without touching the run. An authenticated worker's registration is handed to <c>onWorker</c>.
/// </summary>
public sealed class LeaderServer : IAsyncDisposable
{
    private static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(5);
    private readonly byte[] _secret;
    private readonly Func<RegisterMessage, PeerConnection, Task> _onWorker;
    private readonly Action<string> _log;
    private readonly TcpListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private Task? _accepting;
    private int _rejected;

    public LeaderServer(byte[] secret, IPEndPoint endpoint, Func<RegisterMessage, PeerConnection, Task> onWorker, Action<string> log)
    {
        _secret = secret;
        _onWorker = onWorker;
        _log = log;
        _listener = new TcpListener(endpoint);
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>Connections closed because they failed the handshake.</summary>
    public int Rejected => Volatile.Read(ref _rejected);

    public void Start()
    {
        _listener.Start(backlog: 1024);
        _accepting = Task.Run(AcceptLoopAsync);
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }

            _ = Task.Run(() => HandleAsync(client));
        }
    }

    private async Task HandleAsync(TcpClient client)
    {
        var connection = new PeerConnection(client);
        RegisterMessage register;
        try
        {
            var hello = await Expect(connection, MessageType.Hello).ConfigureAwait(false);
            var clientNonce = Handshake.DecodeHello(hello);
            var serverNonce = Handshake.NewNonce();
            await connection.SendAsync(MessageType.Challenge, Handshake.EncodeChallenge(serverNonce, Handshake.Proof(_secret, "leader", clientNonce, serverNonce))).ConfigureAwait(false);
            var proof = Handshake.DecodeAuth(await Expect(connection, MessageType.Auth).ConfigureAwait(false));
            if (!Handshake.Verify(Handshake.Proof(_secret, "worker", serverNonce, clientNonce), proof))
            {
                throw new ProtocolException("authentication failed (wrong secret)");
            }

            register = RegisterMessage.Decode(await Expect(connection, MessageType.Register).ConfigureAwait(false));
        }
        catch (Exception e) when (e is ProtocolException or IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            Interlocked.Increment(ref _rejected);
            _log($"rejected a connection from {connection.Remote}: {e.Message}");
            await connection.DisposeAsync().ConfigureAwait(false);
            return;
        }

        await _onWorker(register, connection).ConfigureAwait(false);
    }

    private static async Task<byte[]> Expect(PeerConnection connection, MessageType type)
    {
        var frame = await connection.ReceiveAsync(HandshakeTimeout).ConfigureAwait(false)
            ?? throw new ProtocolException($"closed before {type}");
        return frame.Type == type ? frame.Payload : throw new ProtocolException($"expected {type}, got message type {(int)frame.Type}");
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _listener.Stop();
        if (_accepting is not null)
        {
            await _accepting.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        _listener.Dispose();
        _stop.Dispose();
    }
}
