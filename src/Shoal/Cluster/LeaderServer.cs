using System.Net;
using System.Net.Sockets;
using Shoal.Protocol;

namespace Shoal.Cluster;

/// <summary>
/// The leader's listening sockets (one per address, all on one port). Every connection must pass the
/// <see cref="Handshake"/> within <see cref="DefaultHandshakeTimeout"/>, counted for the whole handshake, not per
/// frame; one that fails (wrong secret, garbage, a replayed proof, a frame larger than the handshake step needs,
/// silence, slowness) is logged and closed without touching the run. Before a peer has authenticated it gets no more
/// than what a handshake needs: each frame's length prefix is checked against that step's cap before anything is
/// allocated, and at most <see cref="DefaultMaxPendingHandshakes"/> connections may be in their handshake at once
/// (more are closed as soon as they are accepted; a real worker tries again). An authenticated worker's registration
/// is handed to <c>onWorker</c>.
/// </summary>
public sealed class LeaderServer : IAsyncDisposable
{
    /// <summary>Hello: magic, two ints and a 32-byte nonce (49 bytes); Auth: a 32-byte proof. Room to spare.</summary>
    public const int MaxHelloFrame = 1024;

    public const int MaxAuthFrame = 1024;

    /// <summary>Register: a host name and the GPU ids (a few thousand short ids fit).</summary>
    public const int MaxRegisterFrame = 64 << 10;

    public const int DefaultMaxPendingHandshakes = 64;
    public static readonly TimeSpan DefaultHandshakeTimeout = TimeSpan.FromSeconds(5);

    private readonly byte[] _secret;
    private readonly IReadOnlyList<IPAddress> _addresses;
    private readonly int _requestedPort;
    private readonly Func<RegisterMessage, PeerConnection, Task> _onWorker;
    private readonly Action<string> _log;
    private readonly int _maxPending;
    private readonly TimeSpan _handshakeTimeout;
    private readonly List<TcpListener> _listeners = [];
    private readonly List<Task> _accepting = [];
    private readonly CancellationTokenSource _stop = new();
    private int _rejected;
    private int _pending;
    private int _refusing;

    public LeaderServer(byte[] secret, IPEndPoint endpoint, Func<RegisterMessage, PeerConnection, Task> onWorker, Action<string> log)
        : this(secret, [endpoint?.Address ?? throw new ArgumentNullException(nameof(endpoint))], endpoint.Port, onWorker, log)
    {
    }

    /// <summary>Listens on every one of <paramref name="addresses"/>, on <paramref name="port"/> (0: any free one,
    /// the same for all).</summary>
    public LeaderServer(
        byte[] secret,
        IReadOnlyList<IPAddress> addresses,
        int port,
        Func<RegisterMessage, PeerConnection, Task> onWorker,
        Action<string> log,
        int maxPendingHandshakes = DefaultMaxPendingHandshakes,
        TimeSpan? handshakeTimeout = null)
    {
        ArgumentNullException.ThrowIfNull(addresses);
        ArgumentOutOfRangeException.ThrowIfZero(addresses.Count);
        _secret = secret;
        _addresses = addresses;
        _requestedPort = port;
        _onWorker = onWorker;
        _log = log;
        _maxPending = maxPendingHandshakes;
        _handshakeTimeout = handshakeTimeout ?? DefaultHandshakeTimeout;
    }

    public int Port => ((IPEndPoint)_listeners[0].LocalEndpoint).Port;

    /// <summary>Where it listens (after <see cref="Start"/>).</summary>
    public IReadOnlyList<IPEndPoint> LocalEndpoints => [.. _listeners.Select(l => (IPEndPoint)l.LocalEndpoint)];

    /// <summary>Connections closed because they failed the handshake or found too many others in theirs.</summary>
    public int Rejected => Volatile.Read(ref _rejected);

    /// <summary>Connections in their handshake now.</summary>
    public int PendingHandshakes => Volatile.Read(ref _pending);

    /// <summary>Binds the addresses and starts accepting. An address that is not this host's (a name can resolve to
    /// some that are not) is skipped, with a log line, as long as another one binds; otherwise
    /// <see cref="SocketException"/>.</summary>
    public void Start()
    {
        // With port 0 the first socket picks the port and the others take the same; should another process hold it
        // on one of the other addresses, pick again.
        for (var tries = 1; ; tries++)
        {
            try
            {
                BindAll();
                break;
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse && _requestedPort == 0 && _listeners.Count > 0 && tries < 10)
            {
                StopListeners();
            }
            catch
            {
                StopListeners();
                throw;
            }
        }

        foreach (var listener in _listeners)
        {
            _accepting.Add(Task.Run(() => AcceptLoopAsync(listener)));
        }
    }

    private void BindAll()
    {
        SocketException? notHere = null;
        foreach (var address in _addresses)
        {
            var listener = new TcpListener(address, _listeners.Count == 0 ? _requestedPort : Port);
            try
            {
                listener.Start(backlog: 1024);
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressNotAvailable && _addresses.Count > 1)
            {
                listener.Dispose();
                notHere = e;
                _log($"not listening on {address}: {e.Message}");
                continue;
            }
            catch
            {
                listener.Dispose();
                throw;
            }

            _listeners.Add(listener);
        }

        if (_listeners.Count == 0)
        {
            throw notHere ?? new SocketException((int)SocketError.AddressNotAvailable);
        }
    }

    private void StopListeners()
    {
        foreach (var l in _listeners)
        {
            l.Stop();
            l.Dispose();
        }

        _listeners.Clear();
    }

    private async Task AcceptLoopAsync(TcpListener listener)
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await listener.AcceptTcpClientAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }

            if (Interlocked.Increment(ref _pending) > _maxPending)
            {
                Interlocked.Decrement(ref _pending);
                Interlocked.Increment(ref _rejected);
                var remote = client.Client.RemoteEndPoint?.ToString() ?? "?";
                client.Dispose();
                if (Interlocked.Exchange(ref _refusing, 1) == 0)
                {
                    // Once per burst, not once per connection: a flood must not flood the log too.
                    _log($"too many connections in their handshake ({_maxPending}): closing new ones (first: {remote}) until some finish");
                }

                continue;
            }

            _ = Task.Run(() => HandleAsync(client));
        }
    }

    private async Task HandleAsync(TcpClient client)
    {
        var connection = new PeerConnection(client);
        RegisterMessage? register;
        try
        {
            register = await HandshakeAsync(connection).ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref _pending);
            Volatile.Write(ref _refusing, 0);
        }

        if (register is null)
        {
            Interlocked.Increment(ref _rejected);
            await connection.DisposeAsync().ConfigureAwait(false);
            return;
        }

        await _onWorker(register, connection).ConfigureAwait(false);
    }

    /// <summary>The peer's registration once it has proven it knows the secret, or null (logged) when it has not
    /// done so within the handshake timeout.</summary>
    private async Task<RegisterMessage?> HandshakeAsync(PeerConnection connection)
    {
        // The deadline covers the whole handshake, writes included: a peer that trickles each frame just in time
        // (or never reads) is closed all the same.
        using var deadline = new CancellationTokenSource(_handshakeTimeout);
        using var closeAtDeadline = deadline.Token.Register(() => connection.Close());
        try
        {
            var hello = await Expect(connection, MessageType.Hello, MaxHelloFrame).ConfigureAwait(false);
            var clientNonce = Handshake.DecodeHello(hello);
            var serverNonce = Handshake.NewNonce();
            await connection.SendAsync(MessageType.Challenge, Handshake.EncodeChallenge(serverNonce, Handshake.Proof(_secret, "leader", clientNonce, serverNonce))).ConfigureAwait(false);
            var proof = Handshake.DecodeAuth(await Expect(connection, MessageType.Auth, MaxAuthFrame).ConfigureAwait(false));
            if (!Handshake.Verify(Handshake.Proof(_secret, "worker", serverNonce, clientNonce), proof))
            {
                throw new ProtocolException("authentication failed (wrong secret)");
            }

            var register = RegisterMessage.Decode(await Expect(connection, MessageType.Register, MaxRegisterFrame).ConfigureAwait(false));
            closeAtDeadline.Dispose(); // waits for the callback, should it be running: then the connection is closed
            return deadline.IsCancellationRequested ? throw new OperationCanceledException() : register;
        }
        catch (Exception e) when (e is ProtocolException or IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // (IsCancellationRequested is set before the callback closes the connection.)
            var why = deadline.IsCancellationRequested ? $"no complete handshake within {_handshakeTimeout.TotalSeconds:0.#} s" : e.Message;
            _log($"rejected a connection from {connection.Remote}: {why}");
            return null;
        }
    }

    /// <summary>The next frame, of <paramref name="type"/>. No timeout of its own: the handshake's deadline closes
    /// the connection, which ends the read (the silence timeout given here is only a longer backstop).</summary>
    private async Task<byte[]> Expect(PeerConnection connection, MessageType type, int maxLength)
    {
        var frame = await connection.ReceiveAsync(_handshakeTimeout + TimeSpan.FromSeconds(1), maxLength).ConfigureAwait(false)
            ?? throw new ProtocolException($"closed before {type}");
        return frame.Type == type ? frame.Payload : throw new ProtocolException($"expected {type}, got message type {(int)frame.Type}");
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        foreach (var l in _listeners)
        {
            l.Stop();
        }

        foreach (var t in _accepting)
        {
            await t.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        foreach (var l in _listeners)
        {
            l.Dispose();
        }

        _stop.Dispose();
    }
}
