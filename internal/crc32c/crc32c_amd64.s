#include "textflag.h"

// Folding constants for CRC-32C in the bit-reflected domain, as in Intel's
// "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ": a pair
// for distance D bits is (x^(D+32) mod P)' << 1 and (x^(D-32) mod P)' << 1,
// ' the 32-bit reflection. The D=512, 128 and the final reduction match
// github.com/klauspost/crc32's castagnoliCLMULAvx512 (BSD), from which the
// reduction below is taken; D=2048 lets four lanes fold independently.
DATA k2048<>+0(SB)/8, $0x0dcb17aa4
DATA k2048<>+8(SB)/8, $0x0b9e02b86
DATA k2048<>+16(SB)/8, $0x0dcb17aa4
DATA k2048<>+24(SB)/8, $0x0b9e02b86
DATA k2048<>+32(SB)/8, $0x0dcb17aa4
DATA k2048<>+40(SB)/8, $0x0b9e02b86
DATA k2048<>+48(SB)/8, $0x0dcb17aa4
DATA k2048<>+56(SB)/8, $0x0b9e02b86
GLOBL k2048<>(SB), RODATA, $64

DATA k512<>+0(SB)/8, $0x0740eef02
DATA k512<>+8(SB)/8, $0x09e4addf8
DATA k512<>+16(SB)/8, $0x0740eef02
DATA k512<>+24(SB)/8, $0x09e4addf8
DATA k512<>+32(SB)/8, $0x0740eef02
DATA k512<>+40(SB)/8, $0x09e4addf8
DATA k512<>+48(SB)/8, $0x0740eef02
DATA k512<>+56(SB)/8, $0x09e4addf8
GLOBL k512<>(SB), RODATA, $64

DATA k128<>+0(SB)/8, $0xf20c0dfe
DATA k128<>+8(SB)/8, $0x14cd00bd6
GLOBL k128<>(SB), RODATA, $16

DATA kpoly<>+0(SB)/8, $0x105ec76f0
DATA kpoly<>+8(SB)/8, $0xdea713f1
GLOBL kpoly<>(SB), RODATA, $16

DATA k64<>+0(SB)/8, $0xdd45aab8
GLOBL k64<>(SB), RODATA, $8

// func fold(crc uint32, p []byte) uint32
// len(p) is a positive multiple of 256.
TEXT ·fold(SB), NOSPLIT, $0-36
	MOVL crc+0(FP), AX
	MOVQ p_base+8(FP), SI
	MOVQ p_len+16(FP), CX

	// Four lanes of 64 bytes; the CRC so far goes into the first.
	VMOVDQU64 (SI), Z1
	VMOVDQU64 64(SI), Z2
	VMOVDQU64 128(SI), Z3
	VMOVDQU64 192(SI), Z4
	VMOVQ     AX, X0
	VPXORQ    Z0, Z1, Z1
	ADDQ      $256, SI
	SUBQ      $256, CX
	JZ        lanes

	// Each lane folds 256 bytes ahead onto the next data for it; the
	// four are independent, so the multiplier's latency overlaps.
	VMOVDQU64 k2048<>+0(SB), Z0

loop256:
	VMOVDQU64  (SI), Z11
	VMOVDQU64  64(SI), Z12
	VMOVDQU64  128(SI), Z13
	VMOVDQU64  192(SI), Z14
	VPCLMULQDQ $0x11, Z0, Z1, Z5
	VPCLMULQDQ $0x00, Z0, Z1, Z1
	VPCLMULQDQ $0x11, Z0, Z2, Z6
	VPCLMULQDQ $0x00, Z0, Z2, Z2
	VPCLMULQDQ $0x11, Z0, Z3, Z7
	VPCLMULQDQ $0x00, Z0, Z3, Z3
	VPCLMULQDQ $0x11, Z0, Z4, Z8
	VPCLMULQDQ $0x00, Z0, Z4, Z4
	VPTERNLOGD $0x96, Z11, Z5, Z1
	VPTERNLOGD $0x96, Z12, Z6, Z2
	VPTERNLOGD $0x96, Z13, Z7, Z3
	VPTERNLOGD $0x96, Z14, Z8, Z4
	ADDQ       $256, SI
	SUBQ       $256, CX
	JNZ        loop256

lanes:
	// Fold the lanes into one, 64 bytes at a time.
	VMOVDQU64  k512<>+0(SB), Z0
	VPCLMULQDQ $0x11, Z0, Z1, Z5
	VPCLMULQDQ $0x00, Z0, Z1, Z1
	VPTERNLOGD $0x96, Z2, Z5, Z1
	VPCLMULQDQ $0x11, Z0, Z1, Z5
	VPCLMULQDQ $0x00, Z0, Z1, Z1
	VPTERNLOGD $0x96, Z3, Z5, Z1
	VPCLMULQDQ $0x11, Z0, Z1, Z5
	VPCLMULQDQ $0x00, Z0, Z1, Z1
	VPTERNLOGD $0x96, Z4, Z5, Z1

	// Then its four 128-bit parts into one (X1), 16 bytes at a time.
	VEXTRACTF32X4 $1, Z1, X2
	VEXTRACTF32X4 $2, Z1, X3
	VEXTRACTF32X4 $3, Z1, X4
	VZEROUPPER // the rest is SSE: no transition with dirty upper halves

	MOVOU k128<>+0(SB), X0

	MOVOA     X1, X5
	PCLMULQDQ $0, X0, X1
	PCLMULQDQ $0x11, X0, X5
	PXOR      X5, X1
	PXOR      X2, X1

	MOVOA     X1, X5
	PCLMULQDQ $0, X0, X1
	PCLMULQDQ $0x11, X0, X5
	PXOR      X5, X1
	PXOR      X3, X1

	MOVOA     X1, X5
	PCLMULQDQ $0, X0, X1
	PCLMULQDQ $0x11, X0, X5
	PXOR      X5, X1
	PXOR      X4, X1

	// 128 bits to 64, then Barrett reduction to 32.
	PCMPEQB   X3, X3
	PCLMULQDQ $1, X1, X0
	PSRLDQ    $8, X1
	PXOR      X0, X1

	MOVOA X1, X2
	MOVQ  k64<>+0(SB), X0

	PSRLQ $32, X3 // a 32-bit mask

	PSRLDQ    $4, X2
	PAND      X3, X1
	PCLMULQDQ $0, X0, X1
	PXOR      X2, X1

	MOVOU kpoly<>+0(SB), X0

	MOVOA     X1, X2
	PAND      X3, X1
	PCLMULQDQ $0x10, X0, X1
	PAND      X3, X1
	PCLMULQDQ $0, X0, X1
	PXOR      X2, X1

	PEXTRD $1, X1, AX
	MOVL   AX, ret+32(FP)
	RET
